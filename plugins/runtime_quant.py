"""Quantization for the runtimes people deploy: ``quant-ort`` and ``quant-openvino``.

Each takes the model it is given (the teacher, or the previous chain step's model, e.g. a
distilled student: ``chain: [{name: pkd-skip}, {name: quant-ort}]``), exports it to ONNX the way
the ``onnxruntime`` backend does (:mod:`compressbench.runtimes.onnxruntime`), and quantizes the graph for one
runtime. The result exists only for that runtime (saved as ``onnx`` / ``openvino``), so it must
be the last step of a chain; it is scored on the reported split by that runtime's own outputs,
and measured only on that runtime (the other backends record why).

- ``quant-ort``: ONNX Runtime int8 (``onnxruntime.quantization``). ``mode: dynamic`` (default):
  int8 weights, activations quantized per call, on the graph after ONNX Runtime's transformer
  fusions. ``mode: static``: int8 weights and activations (QDQ), activation ranges calibrated
  on the held-out validation split (never the reported one).
- ``quant-openvino``: NNCF post-training int8 (``nncf.quantize``, transformer model type),
  calibrated on the held-out validation split the same way.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from compressbench import api
from compressbench.api import ConfigError, Method, hookimpl


def calibration_batches(ctx, n: int) -> list[dict]:
    """Up to ``n`` examples of the held-out validation split, one batch each (real lengths)."""
    feats = ctx.features["val"][:n]
    if not feats:
        raise ConfigError(f"{ctx.task.name}: no held-out validation examples to calibrate on")
    return [api.as_batch([f], ctx.pad_id) for f in feats]


def exported_input(ctx, method: str):
    """The step's input model and its fp32 ONNX export (in the step's scratch folder)."""
    model = ctx.model()
    path = ctx.cache_dir / "fp32.onnx"
    try:
        api.export_onnx(model, path, ctx.task.kind)
    except api.Unsupported as exc:
        raise ConfigError(f"{method} cannot export its input model to ONNX: {exc}") from None
    return model, path


def require(module: str, extra: str, where: str, method: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{where}: {method} needs {module}: pip install "
                          f"'compressbench[{extra}]'")


@dataclass(frozen=True)
class OrtParams:
    mode: str = "dynamic"  # or "static": activations int8 too, calibrated on validation
    per_channel: bool = True  # one weight scale per output channel: SST-2 dev 0.8567 vs
    # 0.8429 per tensor for the embedded teacher (fp32 0.8544), at the same speed
    calibration_samples: int = 300  # static: held-out validation examples used to calibrate
    calibration: str = "minmax"  # static: or "entropy", "percentile" (onnxruntime's methods)
    fuse: bool = True  # ONNX Runtime's transformer fusions first, where they apply

    def __post_init__(self):
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode: {self.mode!r} is not 'dynamic' or 'static'")
        if self.calibration not in ("minmax", "entropy", "percentile"):
            raise ValueError(f"calibration: {self.calibration!r} is not 'minmax', 'entropy' "
                             f"or 'percentile'")
        if self.calibration_samples < 1:
            raise ValueError(f"calibration_samples: {self.calibration_samples} must be >= 1")


class QuantOrt(Method):
    name = "quant-ort"
    version = "1"
    Params = OrtParams
    runtime = "onnxruntime"  # the model exists only for this runtime
    description = "ONNX Runtime int8 (dynamic, or static calibrated on validation)"

    def check(self, params: OrtParams, facts) -> None:
        require("onnxruntime", "onnx", facts.where, self.name)
        require("onnx", "onnx", facts.where, self.name)

    def build(self, ctx, params: OrtParams):
        onnxrt = api.onnxrt
        model, fp32 = exported_input(ctx, self.name)
        calib = calibration_batches(ctx, params.calibration_samples)
        fused = params.fuse and onnxrt.optimize(fp32, model, calib[:8])
        ctx.emit("onnx_export", {"transformer_fusion": fused})
        out = ctx.cache_dir / "int8.onnx"
        if params.mode == "dynamic":
            onnxrt.quantize_dynamic_int8(fp32, out, params.per_channel)
        else:
            onnxrt.quantize_static_int8(fp32, out, calib, params.per_channel, params.calibration)
        return onnxrt.OnnxModel(out, getattr(model, "config", None))


@dataclass(frozen=True)
class OpenVINOParams:
    calibration_samples: int = 300  # held-out validation examples used to calibrate
    preset: str = "performance"  # NNCF: symmetric activations; "mixed": asymmetric

    def __post_init__(self):
        if self.preset not in ("performance", "mixed"):
            raise ValueError(f"preset: {self.preset!r} is not 'performance' or 'mixed'")
        if self.calibration_samples < 1:
            raise ValueError(f"calibration_samples: {self.calibration_samples} must be >= 1")


class QuantOpenVINO(Method):
    name = "quant-openvino"
    version = "1"
    Params = OpenVINOParams
    runtime = "openvino"
    description = "OpenVINO int8 by NNCF post-training quantization, calibrated on validation"

    def check(self, params: OpenVINOParams, facts) -> None:
        require("openvino", "openvino", facts.where, self.name)
        require("nncf", "openvino", facts.where, self.name)
        require("onnx", "openvino", facts.where, self.name)

    def build(self, ctx, params: OpenVINOParams):
        ov = api.openvino
        model, fp32 = exported_input(ctx, self.name)
        quantized = ov.quantize_int8(ov.convert(fp32),
                                     calibration_batches(ctx, params.calibration_samples),
                                     params.preset)
        path = ov.save(quantized, ctx.cache_dir / "model.xml")
        return ov.OpenVINOModel(path, getattr(model, "config", None))


@hookimpl
def register_methods(register):
    register(QuantOrt())
    register(QuantOpenVINO())
