"""Post-training quantization: ``quant-dynamic``, ``quant-torchao`` and ``quant-half``.

None of them trains. Each takes the model it is given (the teacher, or the previous chain step's
model) and changes how its weights are stored and computed; the runner then measures it on the
CPU like every other model, so a scheme that is slower on this CPU shows up as slower.

- ``quant-dynamic``: PyTorch's dynamic int8 quantization (``torch.ao.quantization``): Linear
  (and LSTM) weights stored as int8, activations quantized on the fly per batch, int8 GEMMs
  from fbgemm / oneDNN (Zafrir et al. 2019 "Q8BERT" quantize BERT's Linear layers to int8;
  PyTorch's dynamic-quantization tutorial does it for BERT). Embeddings and LayerNorm stay fp32.
- ``quant-torchao``: the same idea through torchao's ``quantize_`` API: int8 dynamic
  activations with int8 weights, or int8 weight-only (weights dequantized inside the matmul).
- ``quant-half``: every weight cast to float16 or bfloat16, run as such on the CPU.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from compressbench import Method, hookimpl
from compressbench.errors import ConfigError


@dataclass(frozen=True)
class DynamicParams:
    per_channel: bool = False  # one scale per output row; PyTorch's default qconfig is per-tensor
    lstm: bool = True  # also quantize LSTM layers (the BiLSTM student), as PyTorch allows


class QuantDynamic(Method):
    name = "quant-dynamic"
    Params = DynamicParams
    description = "PyTorch dynamic int8 quantization of Linear (and LSTM) layers"

    def build(self, ctx, params: DynamicParams):
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            per_channel_dynamic_qconfig,
            quantize_dynamic,
        )

        model = ctx.model().float()
        qconfig = per_channel_dynamic_qconfig if params.per_channel else default_dynamic_qconfig
        spec = {nn.Linear: qconfig}
        if params.lstm:
            spec[nn.LSTM] = default_dynamic_qconfig  # LSTM supports per-tensor weights only
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice
            warnings.simplefilter("ignore")
            return quantize_dynamic(model.eval(), spec, dtype=torch.qint8)


@dataclass(frozen=True)
class TorchaoParams:
    scheme: str = "int8-dynamic"  # or "int8-weight-only" (torchao Int8WeightOnlyConfig)

    def __post_init__(self):
        if self.scheme not in ("int8-dynamic", "int8-weight-only"):
            raise ValueError(f"scheme: {self.scheme!r} is not 'int8-dynamic' or "
                             f"'int8-weight-only'")


def import_torchao():
    try:
        import logging

        logging.getLogger("torchao").setLevel(logging.ERROR)  # optional-kernel load notices
        import torchao.quantization as q
    except ImportError as exc:
        raise ConfigError("quant-torchao needs torchao: pip install 'compressbench[torchao]' "
                          f"(import failed: {exc})") from None
    return q


class QuantTorchao(Method):
    name = "quant-torchao"
    Params = TorchaoParams
    description = "torchao int8 (dynamic activation + weight, or weight-only) on Linear layers"

    def build(self, ctx, params: TorchaoParams):
        q = import_torchao()
        model = ctx.model().float().eval()
        if not hasattr(model, "config"):
            raise ConfigError(f"quant-torchao: {type(model).__name__} is not a transformers "
                              f"model, and torchao weights are saved as a config plus a state "
                              f"dict; use quant-dynamic for it")
        config = (q.Int8DynamicActivationInt8WeightConfig() if params.scheme == "int8-dynamic"
                  else q.Int8WeightOnlyConfig())
        q.quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear))
        return model


@dataclass(frozen=True)
class HalfParams:
    dtype: str = "float16"  # or "bfloat16"

    def __post_init__(self):
        if self.dtype not in ("float16", "bfloat16"):
            raise ValueError(f"dtype: {self.dtype!r} is not 'float16' or 'bfloat16'")


class QuantHalf(Method):
    name = "quant-half"
    Params = HalfParams
    description = "all weights in float16 or bfloat16, run as such on the CPU"

    def build(self, ctx, params: HalfParams):
        return ctx.model().to(getattr(torch, params.dtype)).eval()


@hookimpl
def register_methods(register):
    register(QuantDynamic())
    register(QuantTorchao())
    register(QuantHalf())
