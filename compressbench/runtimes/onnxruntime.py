"""The ``onnxruntime`` runtime, in one file: the backend, its settings, its saved format, and
the ONNX export every ``onnxruntime`` measurement, ``quant-ort`` and ``compressbench export
--format onnx`` use, built one way.

- :class:`OnnxRuntimeBackend` (registered as ``onnxruntime``) with :class:`OrtOptions`
  (``- onnxruntime: {graph_optimization: basic}``); its saved format ``onnx`` (``model.onnx``,
  written by :meth:`OnnxModel.save_files`, read by ``load_saved``, checked by ``verify_saved``).

- :func:`export_onnx`: ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``, opset 17),
  inputs ``input_ids`` / ``attention_mask`` / ``token_type_ids`` as the model's ``forward``
  names them, batch and sequence axes dynamic, one output ``logits``. BERT-family models are
  exported with ``attn_implementation="eager"``: ONNX Runtime's transformer optimizer fuses
  attention only in that graph (the SDPA export gets no fusion).
- :func:`optimize`: ``onnxruntime.transformers.optimizer`` (attention, LayerNorm, GELU and
  embedding fusions) for BERT graphs, kept only if its outputs match the unfused graph's;
  every graph also gets ORT's full graph optimisation when a session opens.
- :func:`quantize_dynamic_int8` / :func:`quantize_static_int8`: ``onnxruntime.quantization``
  (``DefaultTensorType`` FLOAT is needed on the fused graph).
- :class:`OnnxModel`: a saved ``.onnx`` file that evaluates like a PyTorch model (``forward``
  returns an object with ``.logits``), so a model that exists only for ONNX Runtime is scored
  by ONNX Runtime's own outputs.

Needs ``pip install 'compressbench[onnx]'``; nothing here is imported by the core otherwise.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from compressbench import errors, kinds
from compressbench.errors import CompressBenchError
from compressbench.measure.backend import (
    SavedModel,
    Unsupported,
    missing_module,
    sample_batches,
)

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXTRA = "onnx"  # pip install 'compressbench[onnx]'


def require(module: str = "onnxruntime"):
    """Import ``module`` (onnx, onnxruntime) or fail saying which extra installs it."""
    return errors.require(module, EXTRA)


def quantized_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be exported to ONNX because of how it is quantized, if it is."""
    from compressbench.models.stats import is_quantized, tensor_subclass_modules

    if is_quantized(model):
        return ("PyTorch-quantized modules (torch.ao dynamic int8) do not export to ONNX; "
                "quantize for ONNX Runtime with quant-ort instead")
    subclasses = tensor_subclass_modules(model)
    if subclasses:
        return (f"weights are {', '.join(subclasses)} tensor subclasses, which do not export to "
                f"ONNX; quantize for ONNX Runtime with quant-ort instead")
    return None


def input_names(model: nn.Module) -> list[str]:
    """The inputs ``model.forward`` takes, as the measuring and training code passes them."""
    from compressbench.models.io import forward_kwargs
    return list(forward_kwargs(model, dict.fromkeys(INPUTS)))


class _Logits(nn.Module):
    """Positional inputs -> logits, what the exporter traces."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        out = self.model(**dict(zip(self.names, args)))
        return out.logits if hasattr(out, "logits") else out


def eager_attention(model: nn.Module) -> None:
    """Switch a transformers model to the eager attention ONNX Runtime can fuse."""
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
            return
        except Exception:  # noqa: BLE001 - older transformers: set the config field instead
            pass
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "_attn_implementation"):
        config._attn_implementation = "eager"


def export_onnx(model: nn.Module, path: Path, kind) -> Path:
    """Write ``model`` (fp32, eval) to ``path`` as ONNX; raises
    :class:`compressbench.measure.Unsupported` with the reason when it cannot be exported."""
    reason = quantized_reason(model) or export_reason(model)
    if reason:
        raise Unsupported(reason)
    import warnings

    model = model.float().eval()
    eager_attention(model)
    names = input_names(model)
    if "input_ids" not in names:
        raise Unsupported(f"{type(model).__name__}.forward takes no input_ids")
    kind = kinds.get(kind)
    ids = kind.shape_inputs(torch.randint(1000, 2000, (2, 16)))  # (B, T) or the kind's shape
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
               "token_type_ids": torch.zeros_like(ids)}
    axes = {n: kind.onnx_input_axes() for n in names}
    axes["logits"] = kind.onnx_logits_axes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        try:
            torch.onnx.export(_Logits(model, names).eval(), tuple(example[n] for n in names),
                              str(path),
                              dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=["logits"], dynamic_axes=axes,
                              do_constant_folding=True)
        except Exception as exc:  # noqa: BLE001 - the exporter's reason is the record's reason
            raise Unsupported(f"torch.onnx.export failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return path


def export_reason(model: nn.Module) -> str | None:
    """A model class may say why it does not export to ONNX, in its user's words
    (``onnx_unsupported = "..."``): the record shows that, not the exporter's message."""
    for module in model.modules():
        reason = getattr(type(module), "onnx_unsupported", None)
        if isinstance(reason, str) and reason:
            return reason
    return None


def bert_shape(model: nn.Module) -> tuple[int, int] | None:
    """(heads, hidden) when ``model`` is a BERT-family encoder with the same heads in every
    layer (what the transformer optimizer's attention fusion assumes), else None."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", "") not in ("bert", "distilbert"):
        return None
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    if getattr(config, "pruned_heads", None):
        return None
    for name, module in model.named_modules():  # heads removed unevenly: Q/K/V resized
        if isinstance(module, nn.Linear) and name.endswith(("query", "q_lin")):
            if module.out_features != hidden:
                return None
    return (heads, hidden) if heads and hidden else None


def optimize(path: Path, model: nn.Module, sample: list[dict], atol: float = 1e-3) -> bool:
    """Apply ONNX Runtime's transformer fusions to the graph at ``path`` in place, where they
    apply (BERT-family, even heads) and keep the outputs (largest difference <= ``atol`` on
    ``sample``); returns whether the fused graph was kept."""
    shape = bert_shape(model)
    if shape is None:
        return False
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model_type = "bert" if model.config.model_type == "bert" else "distilbert"
    fused = optimizer.optimize_model(str(path), model_type=model_type, num_heads=shape[0],
                                     hidden_size=shape[1], opt_level=1, use_gpu=False)
    fused_path = path.with_name(path.stem + ".fused.onnx")
    fused.save_model_to_file(str(fused_path))
    before = run_onnx(path, sample)
    after = run_onnx(fused_path, sample)
    if max_abs_diff(before, after) > atol:
        fused_path.unlink()
        return False
    fused_path.replace(path)
    return True


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max((float(np.max(np.abs(x - y))) if x.size else 0.0) for x, y in zip(a, b))


#: ONNX Runtime's graph optimisation levels, by the name a suite writes
GRAPH_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
                "basic": "ORT_ENABLE_BASIC", "disabled": "ORT_DISABLE_ALL"}


def session(path: Path, threads: int = 1, optimize_graph: bool = True,
            level: str = "all"):
    """An ONNX Runtime CPU session: ``threads`` intra-op threads, one inter-op, graph
    optimisation at ``level`` (one of :data:`GRAPH_LEVELS`; none without ``optimize_graph``)."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, GRAPH_LEVELS[level if optimize_graph else "disabled"])
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def feeds(sess, batch: dict) -> dict[str, np.ndarray]:
    """The graph's inputs from a batch of tensors or arrays, as int64 arrays."""
    out = {}
    for node in sess.get_inputs():
        value = batch[node.name]
        out[node.name] = np.ascontiguousarray(
            value.numpy() if isinstance(value, torch.Tensor) else value, dtype=np.int64)
    return out


def run_onnx(path: Path, sample: list[dict], threads: int = 1) -> list[np.ndarray]:
    sess = session(path, threads)
    return [sess.run(None, feeds(sess, x))[0] for x in sample]


# --------------------------------------------------------------------------- quantization

def quantize_dynamic_int8(src: Path, dst: Path, per_channel: bool = False) -> Path:
    """ONNX Runtime dynamic int8: weights int8 (signed), activations quantized per call."""
    require("onnx")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def quantize_static_int8(src: Path, dst: Path, calibration: list[dict],
                         per_channel: bool = False, method: str = "minmax") -> Path:
    """ONNX Runtime static int8 (QDQ), activation ranges calibrated on ``calibration``."""
    require("onnx")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sess = session(src)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([feeds(sess, b) for b in calibration])

        def get_next(self):
            return next(self.items, None)

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
            shutil.copy(src, pre)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel, calibrate_method=methods[method],
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                       "ActivationSymmetric": True, "QuantizeBias": False})
    return dst


# --------------------------------------------------------------------------- a model for ORT

class OnnxModel(nn.Module):
    """An ONNX graph that evaluates like a PyTorch model: ``forward(input_ids, attention_mask,
    token_type_ids)`` runs it in ONNX Runtime and returns ``.logits`` as a tensor. It has no
    PyTorch parameters; :meth:`weight_arrays` lists the graph's weights for parameter counts."""

    def __init__(self, path: Path, config: Any = None, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.config = config
        self._threads = threads or torch.get_num_threads()
        self._session = None

    @property
    def session(self):
        if self._session is None:
            self._session = session(self.path, self._threads)
        return self._session

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids}
        names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in names if batch.get(n) is None]
        if missing:
            if missing == ["token_type_ids"]:
                batch["token_type_ids"] = torch.zeros_like(input_ids)
            elif missing == ["attention_mask"]:
                batch["attention_mask"] = torch.ones_like(input_ids)
            else:
                raise CompressBenchError(f"{self.path}: inputs {missing} not given")
        out = self.session.run(None, feeds(self.session, batch))[0]
        return SimpleNamespace(logits=torch.from_numpy(out))

    def weight_arrays(self):
        """The graph's weights (float and integer initializers with at least one dimension;
        shape constants and scalars such as scales excluded)."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(self.path)).graph
        for init in graph.initializer:
            if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                  onnx.TensorProto.INT8, onnx.TensorProto.UINT8,
                                  onnx.TensorProto.BFLOAT16) and len(init.dims) >= 1 \
                    and int(np.prod(init.dims)) > 1:
                yield numpy_helper.to_array(init)

    def save_files(self, folder: Path) -> dict:
        """Write ``model.onnx`` (and the config) into ``folder``; the saved format's meta."""
        shutil.copyfile(self.path, Path(folder) / "model.onnx")
        if self.config is not None and hasattr(self.config, "save_pretrained"):
            self.config.save_pretrained(folder)
        return {"format": "onnx", "runtime": "onnxruntime"}

    def __getstate__(self):
        raise TypeError("OnnxModel is saved as its .onnx file, not pickled")


# --------------------------------------------------------------------------- the backend

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


@dataclass(frozen=True)
class OrtOptions:
    """``- onnxruntime: {graph_optimization: basic}``."""

    graph_optimization: str = "all"  # ONNX Runtime's level: all, extended, basic, disabled

    def __post_init__(self):
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
    saved_format = "onnx"  # quant-ort's models: model.onnx (+ config.json)
    marker = "s"  # in the report's plots
    card = (("An ONNX graph (`model.onnx`, opset 17; inputs `input_ids`, `attention_mask` "
             "and, for BERT, `token_type_ids`, int64 of shape (batch, sequence); output "
             "`logits`) with its tokenizer. ONNX Runtime alone runs it:"), "", "```python",
            "import numpy as np, onnxruntime as ort",
            "from transformers import AutoTokenizer",
            "tokenizer = AutoTokenizer.from_pretrained(PATH)",
            "session = ort.InferenceSession(f'{PATH}/model.onnx')",
            "enc = tokenizer(['a sentence'], return_tensors='np')",
            "names = {i.name for i in session.get_inputs()}",
            "logits = session.run(None, {k: v.astype(np.int64) for k, v in enc.items() "
            "if k in names})[0]", "```")
    library = "onnxruntime"  # the model card's library_name

    def __init__(self, options: OrtOptions | None = None):
        self.options = options or OrtOptions()

    def configure(self, options: OrtOptions) -> OnnxRuntimeBackend:
        return type(self)(options)

    def missing(self) -> str | None:
        return missing_module("onnxruntime", EXTRA) or missing_module("onnx", EXTRA)

    def graph(self, model: SavedModel, workdir: Path) -> Path:
        return model.folder / "model.onnx" if model.format == "onnx" else workdir / "model.onnx"

    def prepare(self, model: SavedModel, workdir: Path, sample: list[dict]) -> dict:
        if model.format == "onnx":
            return {"graph": "as saved"}
        if model.runtime_only:
            raise Unsupported(f"the model exists only for {model.runtime_only}")
        torch_model = model.load_torch()
        start = time.perf_counter()
        path = export_onnx(torch_model, workdir / "model.onnx", model.kind)
        fused = optimize(path, torch_model, sample_batches(sample))
        return {"export_s": round(time.perf_counter() - start, 2), "opset": OPSET,
                "transformer_fusion": fused}

    def load(self, model: SavedModel, workdir: Path, threads: int) -> OrtSession:
        return OrtSession(session(self.graph(model, workdir), threads,
                                  level=self.options.graph_optimization))

    # ------------------------------------------------------------------ its saved format

    def load_saved(self, folder: Path, config: Any = None) -> OnnxModel:
        """A model saved in this runtime's format, as a module that runs it (``quant-ort``'s;
        :meth:`OnnxModel.save_files` writes the format)."""
        self.verify_saved(folder)
        return OnnxModel(Path(folder) / "model.onnx", config)

    def verify_saved(self, folder: Path) -> None:
        """Raise a one-line error when the folder lacks the format's file."""
        if not (Path(folder) / "model.onnx").is_file():
            raise CompressBenchError(f"{folder}: model.onnx is missing (an 'onnx' model "
                                     f"folder holds it); re-run the suite to rebuild it")
