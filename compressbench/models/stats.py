"""What a model holds: parameters, weight dtypes, quantized modules, size on disk."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compressbench.models.sparse import SPARSE

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")


def tensor_subclass_modules(model: nn.Module) -> list[str]:
    """Top-level packages of the tensor subclasses among the weights (e.g. ['torchao'])."""
    mods = {type(p).__module__.split(".")[0] for p in model.state_dict().values()
            if isinstance(p, torch.Tensor) and type(p) not in (torch.Tensor, nn.Parameter)}
    return sorted(mods)


def weight_dtypes(model: nn.Module) -> dict[str, int]:
    """How many weight values are stored in each dtype (e.g. {'qint8': ..., 'float32': ...})."""
    out: dict[str, int] = {}
    if callable(getattr(model, "weight_arrays", None)):
        for a in model.weight_arrays():
            out[str(a.dtype)] = out.get(str(a.dtype), 0) + a.size
        return out
    for t in weight_tensors(model):
        name = str(getattr(t, "qdata", t).dtype).removeprefix("torch.")
        out[name] = out.get(name, 0) + t.numel()
    return out


def is_quantized(model: nn.Module) -> bool:
    return any("quantized" in type(m).__module__ for m in model.modules())


def weights_size(folder: Path) -> int:
    """Bytes of the saved weight files as loaded (configs, tokenizer files and the sparse
    copy excluded)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir()
               if p.suffix in WEIGHT_SUFFIXES and p.name != SPARSE)


def weight_tensors(model: nn.Module):
    """Every weight and bias, as plain tensors: parameters, plus the packed weights of
    PyTorch-quantized modules (which are not parameters); quantized values are dequantized."""
    seen: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) not in seen:  # a tied weight counts once
                seen.add(id(p))
                yield p.detach()
        getters = [getattr(module, name, None) for name in ("weight", "bias")]
        if all(callable(g) for g in getters):  # quantized (dynamic) Linear: weight() / bias()
            for g in getters:
                t = g()
                if t is not None:
                    yield t
        elif callable(getattr(module, "get_weight", None)):  # quantized (dynamic) LSTM
            yield from module.get_weight().values()
            yield from module.get_bias().values()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, non-zero) over the model's weights, quantized ones included (for a runtime's
    graph: its weight initializers)."""
    if callable(getattr(model, "weight_arrays", None)):
        import numpy as np
        arrays = list(model.weight_arrays())
        return (sum(a.size for a in arrays), sum(int(np.count_nonzero(a)) for a in arrays))
    total = nonzero = 0
    for t in weight_tensors(model):
        subclass = type(t) not in (torch.Tensor, nn.Parameter)
        values = t.dequantize() if t.is_quantized or subclass else t  # torchao: a subclass
        total += values.numel()
        nonzero += int(torch.count_nonzero(values))
    return total, nonzero
