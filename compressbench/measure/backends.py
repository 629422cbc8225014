"""The built-in backends: ``torch`` (eager), ``torch-compile``, ``onnxruntime``, ``openvino``.

They are registered through the same ``register_backends`` hook a third-party backend uses
(see :mod:`compressbench.measure.backend` for the protocol). ``onnxruntime`` and ``openvino``
need their extras: ``pip install 'compressbench[onnx]'`` / ``'compressbench[openvino]'``.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressbench.hookspecs import hookimpl
from compressbench.measure.backend import SavedModel, Unsupported


def _missing(module: str, extra: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed: pip install 'compressbench[{extra}]'"
    return None


class TorchSession:
    def __init__(self, model):
        self.model = model

    def inputs(self, batch: dict):
        import torch

        from compressbench.models import forward_kwargs
        return forward_kwargs(self.model, {k: torch.from_numpy(np.ascontiguousarray(v))
                                           for k, v in batch.items()})

    def __call__(self, kwargs):
        import torch
        with torch.inference_mode():
            return self.model(**kwargs)

    def logits(self, output) -> np.ndarray:
        from compressbench.models import logits_of
        return logits_of(output).float().numpy()


class TorchBackend:
    """PyTorch eager, fp32 unless the model itself is quantized or cast: the common baseline."""

    name = "torch"
    description = "PyTorch eager"
    packages = ("torch",)
    needs_prepare = False  # loads the saved model as it is (runtime-only models are refused
    # by the launcher before any process starts)

    def missing(self) -> str | None:
        return None

    def prepare(self, model: SavedModel, workdir: Path, sample: list[dict]) -> dict:
        if model.runtime_only:
            raise Unsupported(f"the model exists only for {model.runtime_only} "
                              f"(saved as '{model.format}')")
        return {}

    def load(self, model: SavedModel, workdir: Path, threads: int) -> TorchSession:
        import torch
        torch.set_num_threads(threads)
        return TorchSession(model.load_torch())


class TorchCompileBackend(TorchBackend):
    """``torch.compile`` (Inductor, dynamic shapes); the compile happens in the untimed
    warm-up, and can take tens of seconds per model."""

    name = "torch-compile"
    description = "torch.compile (Inductor, dynamic shapes)"

    def load(self, model: SavedModel, workdir: Path, threads: int) -> TorchSession:
        import torch
        torch.set_num_threads(threads)
        return TorchSession(torch.compile(model.load_torch(), dynamic=True))


class OrtSession:
    def __init__(self, sess):
        self.sess = sess
        self.names = [i.name for i in sess.get_inputs()]

    def inputs(self, batch: dict):
        return {n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in self.names}

    def __call__(self, feeds):
        return self.sess.run(None, feeds)[0]

    def logits(self, output) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


def sample_batches(sample: list[dict], n: int = 8) -> list[dict]:
    """Single-example int64 batches for checking a converted graph against its source."""
    from compressbench.measure.protocol import as_batch
    return [as_batch([f]) for f in sample[:n]]


@dataclass(frozen=True)
class OrtOptions:
    """``- onnxruntime: {graph_optimization: basic}``."""

    graph_optimization: str = "all"  # ONNX Runtime's level: all, extended, basic, disabled

    def __post_init__(self):
        from compressbench.onnxrt import GRAPH_LEVELS
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ValueError(f"graph_optimization: {self.graph_optimization!r} is not one of "
                             f"{', '.join(GRAPH_LEVELS)}")


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU: the model exported with ``torch.onnx`` (opset 17), ONNX Runtime's
    transformer fusions where they apply, full graph optimisation (``graph_optimization``). A
    model ``quant-ort`` made runs as saved."""

    name = "onnxruntime"
    description = "ONNX Runtime (CPU execution provider)"
    packages = ("onnxruntime", "onnx")
    Options = OrtOptions

    def __init__(self, options: OrtOptions | None = None):
        self.options = options or OrtOptions()

    def configure(self, options: OrtOptions) -> OnnxRuntimeBackend:
        return type(self)(options)

    def missing(self) -> str | None:
        return _missing("onnxruntime", "onnx") or _missing("onnx", "onnx")

    def graph(self, model: SavedModel, workdir: Path) -> Path:
        return model.folder / "model.onnx" if model.format == "onnx" else workdir / "model.onnx"

    def prepare(self, model: SavedModel, workdir: Path, sample: list[dict]) -> dict:
        from compressbench import onnxrt

        if model.format == "onnx":
            return {"graph": "as saved"}
        if model.runtime_only:
            raise Unsupported(f"the model exists only for {model.runtime_only}")
        torch_model = model.load_torch()
        start = time.perf_counter()
        path = onnxrt.export_onnx(torch_model, workdir / "model.onnx", model.kind)
        fused = onnxrt.optimize(path, torch_model, sample_batches(sample))
        return {"export_s": round(time.perf_counter() - start, 2), "opset": onnxrt.OPSET,
                "transformer_fusion": fused}

    def load(self, model: SavedModel, workdir: Path, threads: int) -> OrtSession:
        from compressbench import onnxrt
        return OrtSession(onnxrt.session(self.graph(model, workdir), threads,
                                         level=self.options.graph_optimization))


class OvSession:
    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.names = [p.get_any_name() for p in compiled.inputs]

    def inputs(self, batch: dict):
        return {n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in self.names}

    def __call__(self, feeds):
        return self.request.infer(feeds)[0]

    def logits(self, output) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)

    def describe(self) -> dict:
        return {"inference_precision": str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))}


@dataclass(frozen=True)
class OvOptions:
    """``- openvino: {inference_precision: f32}``."""

    inference_precision: str | None = None  # None: the plugin's default (bf16/f16 where the
    #                                         CPU has it); or f32, bf16, f16
    performance_hint: str = "LATENCY"  # LATENCY or THROUGHPUT
    num_streams: int = 1

    def __post_init__(self):
        if self.inference_precision not in (None, "f32", "bf16", "f16"):
            raise ValueError(f"inference_precision: {self.inference_precision!r} is not f32, "
                             f"bf16, f16 (or null for the plugin's default)")
        if self.performance_hint not in ("LATENCY", "THROUGHPUT"):
            raise ValueError(f"performance_hint: {self.performance_hint!r} is not LATENCY or "
                             f"THROUGHPUT")
        if self.num_streams < 1:
            raise ValueError(f"num_streams: {self.num_streams} must be at least 1")


class OpenVINOBackend:
    """OpenVINO on the CPU at its default inference precision (bf16 or f16 where the CPU has
    it, else f32; the record says which), one stream, latency hint (each a setting:
    ``inference_precision``, ``num_streams``, ``performance_hint``). PyTorch models go through
    the same ONNX export as ``onnxruntime``; a model ``quant-openvino`` made runs as saved."""

    name = "openvino"
    description = "OpenVINO (CPU plugin)"
    packages = ("openvino", "onnx")
    also_runs = ("onnxruntime",)  # reads the ONNX graphs made for ONNX Runtime
    Options = OvOptions

    def __init__(self, options: OvOptions | None = None):
        self.options = options or OvOptions()

    def configure(self, options: OvOptions) -> OpenVINOBackend:
        return type(self)(options)

    def missing(self) -> str | None:
        return _missing("openvino", "openvino")

    def graph(self, model: SavedModel, workdir: Path) -> Path:
        return (model.folder / "model.xml" if model.format == "openvino"
                else workdir / "model.xml")

    def prepare(self, model: SavedModel, workdir: Path, sample: list[dict]) -> dict:
        import openvino as ov

        if model.format == "openvino":
            return {"graph": "as saved"}
        start = time.perf_counter()
        if model.format == "onnx":
            source = model.folder / "model.onnx"
        else:
            from compressbench import onnxrt
            source = onnxrt.export_onnx(model.load_torch(), workdir / "export.onnx", model.kind)
        try:
            ov.save_model(ov.convert_model(str(source)), str(workdir / "model.xml"),
                          compress_to_fp16=False)
        except Exception as exc:  # noqa: BLE001 - the converter's reason is the record's
            raise Unsupported(f"openvino.convert_model failed: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc) else ''}") from None
        if source.name == "export.onnx":
            source.unlink()
        return {"convert_s": round(time.perf_counter() - start, 2)}

    def load(self, model: SavedModel, workdir: Path, threads: int) -> OvSession:
        import openvino as ov

        core = ov.Core()
        o = self.options
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": o.num_streams,
                  "PERFORMANCE_HINT": o.performance_hint}
        if o.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = o.inference_precision
        compiled = core.compile_model(str(self.graph(model, workdir)), "CPU", config)
        return OvSession(compiled)


BUILTIN = (TorchBackend(), TorchCompileBackend(), OnnxRuntimeBackend(), OpenVINOBackend())


@hookimpl
def register_backends(register):
    for backend in BUILTIN:
        register(backend)
