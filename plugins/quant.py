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

from compressbench.api import ConfigError, Method, hookimpl, rebuild_step, rebuild_with


@dataclass(frozen=True)
class DynamicParams:
    per_channel: bool = False  # one scale per output row; PyTorch's default qconfig is per-tensor
    lstm: bool = True  # also quantize LSTM layers (the BiLSTM student), as PyTorch allows


class QuantDynamic(Method):
    name = "quant-dynamic"
    version = "2"  # 2: saved as weights plus a recipe, not a pickle
    Params = DynamicParams
    description = "PyTorch dynamic int8 quantization of Linear (and LSTM) layers"

    def build(self, ctx, params: DynamicParams):
        model = dynamic_int8(ctx.model().float(), params.per_channel, params.lstm)
        # saved as weights plus this recipe: loading re-applies the module swap, then the weights
        return rebuild_with(model, dynamic_int8, per_channel=params.per_channel,
                            lstm=params.lstm)


@rebuild_step
def dynamic_int8(model: nn.Module, per_channel: bool, lstm: bool) -> nn.Module:
    """``model`` with its Linear (and LSTM) layers swapped for dynamic int8 ones."""
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {nn.Linear: qconfig}
    if lstm:
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
    version = "2"  # 2: saved as weights plus a recipe
    Params = TorchaoParams
    description = "torchao int8 (dynamic activation + weight, or weight-only) on Linear layers"

    def check(self, params: TorchaoParams, facts) -> None:
        import importlib.util
        if importlib.util.find_spec("torchao") is None:
            raise ConfigError(f"{facts.where}: quant-torchao needs torchao: pip install "
                              f"'compressbench[torchao]'")

    def build(self, ctx, params: TorchaoParams):
        model = torchao_int8(ctx.model().float().eval(), params.scheme)
        return rebuild_with(model, torchao_int8, scheme=params.scheme)


@rebuild_step
def torchao_int8(model: nn.Module, scheme: str) -> nn.Module:
    """``model``'s Linear weights as torchao int8 tensors (importing torchao also lets
    ``torch.load(weights_only=True)`` read them)."""
    q = import_torchao()
    config = (q.Int8DynamicActivationInt8WeightConfig() if scheme == "int8-dynamic"
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
