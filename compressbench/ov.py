"""OpenVINO: conversion, NNCF post-training int8, and a model that evaluates through OpenVINO.

PyTorch models reach OpenVINO through the same ONNX export as ONNX Runtime
(:func:`compressbench.onnxrt.export_onnx`), then ``openvino.convert_model``. ``quant-openvino``
quantizes that graph with NNCF (``nncf.quantize``, ``ModelType.TRANSFORMER``: the scheme NNCF
recommends for BERT, which keeps the sensitive parts of attention in floating point), calibrated
on the examples it is given. Needs ``pip install 'compressbench[openvino]'``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from compressbench import errors

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
