"""The ``openvino`` runtime, in one file: the backend (:class:`OpenVINOBackend`, settings
:class:`OvOptions`), its saved format ``openvino`` (``model.xml`` + ``model.bin``, written by
:meth:`OpenVINOModel.save_files`, read by ``load_saved``), conversion, NNCF post-training
int8, and a model that evaluates through OpenVINO.

PyTorch models reach OpenVINO through the same ONNX export as ONNX Runtime
(:func:`compressbench.runtimes.onnxruntime.export_onnx`), then ``openvino.convert_model``. ``quant-openvino``
quantizes that graph with NNCF (``nncf.quantize``, ``ModelType.TRANSFORMER``: the scheme NNCF
recommends for BERT, which keeps the sensitive parts of attention in floating point), calibrated
on the examples it is given. Needs ``pip install 'compressbench[openvino]'``.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from compressbench import errors
from compressbench.measure.backend import SavedModel, Unsupported, missing_module

EXTRA = "openvino"


def require(module: str = "openvino"):
    return errors.require(module, EXTRA)


def convert(onnx_path: Path):
    """An ``openvino.Model`` from an ONNX file."""
    ov = require("openvino")
    return ov.convert_model(str(onnx_path))


def quantize_int8(ov_model, calibration: list[dict], preset: str = "performance",
                  fast_bias_correction: bool = True):
    """NNCF post-training int8 of ``ov_model``, activation ranges from ``calibration`` (int64
    feed dicts)."""
    nncf = require("nncf")
    import logging
    logging.getLogger("nncf").setLevel(logging.ERROR)
    names = [p.get_any_name() for p in ov_model.inputs]
    data = nncf.Dataset([{n: b[n] for n in names} for b in calibration])
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE,
               "mixed": nncf.QuantizationPreset.MIXED}
    return nncf.quantize(ov_model, data, preset=presets[preset],
                         model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(calibration),
                         fast_bias_correction=fast_bias_correction)


def save(ov_model, path: Path) -> Path:
    ov = require("openvino")
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path


def compile_model(path: Path, threads: int):
    ov = require("openvino")
    return ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})


class OpenVINOModel(nn.Module):
    """An OpenVINO IR (``model.xml`` + ``model.bin``) that evaluates like a PyTorch model:
    ``forward`` runs it on OpenVINO's CPU plugin and returns ``.logits`` as a tensor."""

    def __init__(self, path: Path, config: Any = None, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.config = config
        self._threads = threads or torch.get_num_threads()
        self._request = None
        self._names: list[str] = []

    @property
    def request(self):
        if self._request is None:
            compiled = compile_model(self.path, self._threads)
            self._names = [p.get_any_name() for p in compiled.inputs]
            self._request = compiled.create_infer_request()
        return self._request

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        request = self.request
        batch = {"input_ids": input_ids,
                 "attention_mask": torch.ones_like(input_ids) if attention_mask is None
                 else attention_mask,
                 "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None
                 else token_type_ids}
        feeds = {n: np.ascontiguousarray(batch[n].numpy(), dtype=np.int64) for n in self._names}
        out = request.infer(feeds)[0]
        return SimpleNamespace(logits=torch.from_numpy(np.array(out, dtype=np.float32)))

    def weight_arrays(self):
        """The IR's weight constants (at least two values; scalars such as scales and
        zero points excluded)."""
        ov = require("openvino")
        model = ov.Core().read_model(str(self.path))
        integers = {ov.Type.i8, ov.Type.u8, ov.Type.i4, ov.Type.u4}
        for op in model.get_ops():
            if op.get_type_name() != "Constant":
                continue
            shape = list(op.get_output_shape(0))
            etype = op.get_element_type()
            if len(shape) >= 1 and int(np.prod(shape)) > 1 and (etype.is_real()
                                                                 or etype in integers):
                yield op.get_data()

    def save_files(self, folder: Path) -> dict:
        shutil.copyfile(self.path, Path(folder) / "model.xml")
        shutil.copyfile(self.path.with_suffix(".bin"), Path(folder) / "model.bin")
        if self.config is not None and hasattr(self.config, "save_pretrained"):
            self.config.save_pretrained(folder)
        return {"format": "openvino", "runtime": "openvino"}

    def __getstate__(self):
        raise TypeError("OpenVINOModel is saved as its IR files, not pickled")


# --------------------------------------------------------------------------- the backend

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
    saved_format = "openvino"  # quant-openvino's models: model.xml + model.bin (+ config.json)
    marker = "^"  # in the report's plots
    card = (("An OpenVINO IR (`model.xml` + `model.bin`) with its tokenizer; inputs as "
             "for ONNX:"), "", "```python", "import openvino as ov",
            "compiled = ov.Core().compile_model(f'{PATH}/model.xml', 'CPU')",
            "logits = compiled(dict(tokenizer(['a sentence'], return_tensors='np')))[0]",
            "```")
    library = None

    def __init__(self, options: OvOptions | None = None):
        self.options = options or OvOptions()

    def configure(self, options: OvOptions) -> OpenVINOBackend:
        return type(self)(options)

    def missing(self) -> str | None:
        return missing_module("openvino", EXTRA)

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
            from compressbench.runtimes.onnxruntime import export_onnx
            source = export_onnx(model.load_torch(), workdir / "export.onnx", model.kind)
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

    # ------------------------------------------------------------------ its saved format

    def load_saved(self, folder: Path, config: Any = None) -> OpenVINOModel:
        """A model saved in this runtime's format, as a module that runs it
        (``quant-openvino``'s; :meth:`OpenVINOModel.save_files` writes the format)."""
        self.verify_saved(folder)
        return OpenVINOModel(Path(folder) / "model.xml", config)

    def verify_saved(self, folder: Path) -> None:
        """Raise a one-line error when the folder lacks one of the format's files."""
        for name in ("model.xml", "model.bin"):
            if not (Path(folder) / name).is_file():
                raise errors.CompressBenchError(
                    f"{folder}: {name} is missing (an 'openvino' model folder holds model.xml "
                    f"and model.bin); re-run the suite to rebuild it")
