"""Loading teachers, building students, and saving/loading any produced model.

A saved model is a folder with ``compressbench.json`` saying how to load it. Loading runs no
code from the folder: every format below is data (JSON and tensors).

- ``"hf"``: a Hugging Face ``save_pretrained`` folder with ``model.safetensors`` (any dtype);
  ``transformers`` alone loads it. Used whenever the model's config describes every weight.
- ``"weights"``: a declarative recipe plus ``model.pt``, a state dict read with
  ``torch.load(weights_only=True)`` (plain and quantized tensors, tensor-subclass weights; no
  pickled objects). The recipe says how to build the module the weights go into: the
  architecture (``config.json`` through ``transformers``, or a factory such as the BiLSTM
  student), Linear layers whose shape differs from the config's (heads removed unevenly), then
  the transforms that change module types (dynamic int8 quantization, torchao). Factories and
  transforms are named ``module:function``; only functions marked with :func:`rebuild_step` in
  ``compressbench`` or an installed compressbench plugin (or a ``--plugin`` file the user
  loaded) are accepted, so a folder cannot name arbitrary code.
- a runtime's own format, e.g. ``"onnx"`` (``model.onnx``) and ``"openvino"`` (``model.xml`` +
  ``model.bin``): a model that exists only for one runtime (``quant-ort``, ``quant-openvino``).
  The runtime that owns the format (its backend's ``saved_format``, see
  :mod:`compressbench.runtimes`) loads it as a module that evaluates like a PyTorch model by
  running the runtime, so its accuracy is the runtime's.
- ``"torch"`` and ``"state"`` (compressbench 0.1): a pickled module, or a state dict whose
  ``imports`` list the folder chose. Loading them can run code from the folder, so it is refused
  unless the caller opts in with ``unsafe_pickle=True`` (``--unsafe-load-pickle``).

A model with sparse weights also gets ``sparse.safetensors``: each weight with enough zeros
stored as a packed bitmask plus its non-zero values (``load_sparse`` rebuilds the state dict).
It is the "compressed size" of an unstructured-pruned model; the dense copy is what runs.

Plugin authors: a method whose model a config cannot describe declares how to rebuild it with
:func:`built_by` (the architecture) and :func:`rebuild_with` (a transform), both taking a
function decorated with :func:`rebuild_step` and JSON-serialisable keyword arguments."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressbench.errors import CompressBenchError
from compressbench.models.io import META, format_owner
from compressbench.models.recipes import (
    call_step,
    linear_shapes,
    recipe_of,
    resize_linears,
    set_recipe,
)
from compressbench.models.sparse import SPARSE, write_sparse
from compressbench.models.stats import is_quantized, tensor_subclass_modules
from compressbench.models.teacher import (
    NO_REMOTE_CODE,
    auto_class,
    quiet_transformers,
    refuse_remote_code,
)

WEIGHTS = "model.pt"  # the "weights" format's state dict (torch.load weights_only=True)


UNSAFE_FLAG = "--unsafe-load-pickle"


PACKED_RNN = "::rnn_weight_bias"  # quantized dynamic RNNs hold TorchScript objects: unpacked


def portable_state(model: nn.Module) -> dict:
    """``model.state_dict()`` with nothing that needs a pickle: the TorchScript cell parameters
    of dynamically quantized RNNs become their (quantized) weight and bias tensors."""
    state = model.state_dict()
    for name, module in model.named_modules():
        if hasattr(module, "_all_weight_values") and \
                callable(getattr(module, "set_weight_bias", None)):  # a quantized dynamic RNN
            prefix = f"{name}." if name else ""
            for key in [k for k in state if k.startswith(prefix + "_all_weight_values.")]:
                del state[key]
            wb = module._weight_bias()
            state[name + PACKED_RNN] = {**wb["weight"], **{k: v.detach() for k, v in
                                                           wb["bias"].items()}}
    plain = torch.Tensor | dict | tuple | torch.dtype | int | float | str | bool
    bad = [k for k, v in state.items() if not isinstance(v, plain)]
    if bad:
        raise CompressBenchError(f"cannot save {type(model).__name__} as weights: "
                                 f"'{bad[0]}' is a {type(state[bad[0]]).__name__}")
    return state


def load_portable(model: nn.Module, state: dict) -> None:
    rnn = {k[:-len(PACKED_RNN)]: state.pop(k) for k in list(state) if k.endswith(PACKED_RNN)}
    fresh = model.state_dict()
    for name in rnn:  # keep the fresh packed objects; their weights are set below
        prefix = f"{name}." if name else ""
        state.update({k: v for k, v in fresh.items() if k.startswith(prefix + "_all_weight")})
    model.load_state_dict(state, assign=True)
    for name, weights in rnn.items():
        model.get_submodule(name).set_weight_bias(weights)


def save_format(model: nn.Module) -> str:
    """'hf', 'weights' or 'runtime' (see the module docstring)."""
    if callable(getattr(model, "save_files", None)):
        return "runtime"
    recipe = recipe_of(model)
    if (hasattr(model, "save_pretrained") and not recipe["steps"] and recipe["factory"] is None
            and not is_quantized(model) and not tensor_subclass_modules(model)
            and config_describes(model)):
        return "hf"
    return "weights"


def config_describes(model: nn.Module) -> bool:
    """Whether building ``type(model)`` from its own config gives every weight the same shape
    (false after removing heads unevenly, for instance)."""
    with torch.device("meta"):
        fresh = type(model)(model.config)
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return all(shapes.get(k) == tuple(v.shape) for k, v in model.state_dict().items())


def weights_meta(model: nn.Module, kind, folder: Path) -> dict:
    """Write the "weights" format's files into ``folder``; returns its compressbench.json."""
    recipe = recipe_of(model)
    meta: dict[str, Any] = {"format": "weights", "kind": str(kind)}
    if recipe["factory"] is not None:
        meta["factory"] = recipe["factory"]
    elif hasattr(model, "config") and hasattr(model.config, "save_pretrained"):
        model.config.save_pretrained(folder)
        with torch.device("meta"):
            fresh = auto_class(kind).from_config(model.config)
        if not isinstance(model, type(fresh)):  # a subclass is rebuilt by a recipe step
            raise CompressBenchError(f"cannot save {type(model).__name__}: its config builds a "
                                     f"{type(fresh).__name__}")
        meta["linear_shapes"] = linear_shapes(model, fresh)
    else:
        raise CompressBenchError(
            f"cannot save a {type(model).__name__}: it is not a transformers model, and its "
            f"method did not say how to build it; call compressbench.built_by(model, FACTORY, "
            f"**kwargs) with a @compressbench.rebuild_step factory (see docs/plugins.md)")
    meta["steps"] = recipe["steps"]
    torch.save(portable_state(model), folder / WEIGHTS)
    return meta


def save_model(model: nn.Module, folder: Path, kind, tokenizer=None) -> Path:
    """Save atomically: write to a temporary sibling folder, then rename it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        quiet_transformers()
        fmt = save_format(model)
        if fmt == "runtime":  # an OnnxModel / OpenVINOModel writes its own files
            meta = {**model.save_files(tmp), "kind": str(kind)}
        elif fmt == "hf":
            model.save_pretrained(tmp, safe_serialization=True)
            meta: dict[str, Any] = {"format": "hf", "kind": str(kind)}
        else:
            meta = weights_meta(model, kind, tmp)
        if fmt != "runtime":
            write_sparse(model, tmp / SPARSE)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / META).write_text(json.dumps(meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META
    if not path.is_file():
        raise CompressBenchError(f"{folder}: not a saved model ({META} is missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CompressBenchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("kind"), str) or \
            not meta["kind"]:
        raise CompressBenchError(f"{path}: not a compressbench model description")
    return meta


def load_model(folder: Path, unsafe_pickle: bool = False) -> nn.Module:
    """Load any model saved by :func:`save_model`, in eval mode. Runs no code from ``folder``:
    the pickle formats of compressbench 0.1 need ``unsafe_pickle=True``, an explicit opt-in."""
    folder = Path(folder)
    meta = read_meta(folder)
    fmt = meta.get("format")
    refuse_remote_code(folder)
    if fmt == "hf":
        model = load_hf_format(folder, meta)
    elif fmt == "weights":
        model = load_weights_format(folder, meta)
    elif fmt in ("torch", "state"):
        model = load_legacy(folder, meta, unsafe_pickle)
    elif isinstance(fmt, str) and format_owner(fmt) is not None:
        model = load_runtime_format(folder, format_owner(fmt))
    else:
        raise CompressBenchError(f"{folder / META}: unknown format {fmt!r} (no installed "
                                 f"runtime saves models in it)")
    return model.eval()


def load_hf_format(folder: Path, meta: dict) -> nn.Module:
    """A ``save_pretrained`` folder; every weight of the architecture must be in its file (a
    file whose tensor names match nothing would otherwise load as a random model)."""
    try:
        model, info = auto_class(meta["kind"]).from_pretrained(
            folder, use_safetensors=True, output_loading_info=True, **NO_REMOTE_CODE)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressBenchError(f"{folder}: the saved model cannot be read "
                                 f"({type(exc).__name__}: {first[:200]})") from None
    missing = info.get("missing_keys") or []
    if missing:
        raise CompressBenchError(
            f"{folder}: its weights file lacks {len(missing)} of the model's tensors (e.g. "
            f"{min(missing)}); refusing to load a partly random model")
    return model


def auto_config(folder: Path):
    """``config.json`` through transformers (JSON only, no custom code), a one-line error."""
    import transformers
    quiet_transformers()
    try:
        return transformers.AutoConfig.from_pretrained(folder, **NO_REMOTE_CODE)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressBenchError(f"{folder / 'config.json'}: cannot be read as a model config "
                                 f"({type(exc).__name__}: {first[:200]})") from None


def load_runtime_format(folder: Path, runtime) -> nn.Module:
    """A model made for one runtime, as a module that runs it, loaded by the runtime that owns
    its format (the config, when saved, gives the pad token and labels)."""
    config = None
    if (folder / "config.json").is_file():
        config = auto_config(folder)
    return runtime.load_saved(folder, config)


def load_weights_format(folder: Path, meta: dict) -> nn.Module:
    factory = meta.get("factory")
    if factory:
        model = call_step(factory, folder)
    else:
        model = auto_class(meta["kind"]).from_config(auto_config(folder))
        resize_linears(model, meta.get("linear_shapes", {}))
    steps = meta.get("steps") or []
    if not isinstance(steps, list):
        raise CompressBenchError(f"{folder / META}: 'steps' must be a list")
    for step in steps:
        model = call_step(step, folder, model)
    try:
        import warnings
        with warnings.catch_warnings():  # quantized tensors are rebuilt through TypedStorage
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            state = torch.load(folder / WEIGHTS, weights_only=True)
    except Exception as exc:
        raise CompressBenchError(f"{folder / WEIGHTS}: cannot be read as weights only "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise CompressBenchError(f"{folder / WEIGHTS}: not a state dict")
    try:
        load_portable(model, state)
    except (RuntimeError, KeyError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressBenchError(f"{folder / WEIGHTS}: its tensors do not fit the model the "
                                 f"recipe builds ({type(exc).__name__}: {first[:200]})") from None
    set_recipe(model, {"factory": factory, "steps": meta.get("steps", [])})
    return model


def load_legacy(folder: Path, meta: dict, unsafe_pickle: bool) -> nn.Module:
    """compressbench 0.1's pickle formats: refused unless the caller opted in by name."""
    import importlib
    import warnings

    if not unsafe_pickle:
        raise CompressBenchError(
            f"{folder}: this model was saved by compressbench 0.1 as a pickle "
            f"('{meta['format']}' format); loading it can run code from the folder. Re-run its "
            f"suite to rebuild it in the safe format, or, only if you trust where it came from, "
            f"pass {UNSAFE_FLAG} (load_model(..., unsafe_pickle=True))")
    for name in meta.get("imports", []):
        importlib.import_module(name)
    if meta["format"] == "state":
        model = auto_class(meta["kind"]).from_config(auto_config(folder))
        model.load_state_dict(torch.load(folder / "model.pt", weights_only=True), assign=True)
        return model
    with warnings.catch_warnings():  # quantized modules unpickle through deprecated APIs
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation")
        return torch.load(folder / "model.pt", weights_only=False)


def copy_model(src: Path, dst: Path) -> Path:
    """Put a saved model at ``dst``: hard links where the filesystem allows (cached files are
    never modified in place), else a copy."""
    from compressbench import safefs

    src, dst = Path(src), Path(dst)
    safefs.refuse_link(dst, "model folder")
    safefs.refuse_link(dst.with_name(f".tmp-{dst.name}"), "model folder")
    if dst.exists():
        shutil.rmtree(dst)
    tmp = dst.with_name(f".tmp-{dst.name}")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, tmp, copy_function=link_or_copy)
    os.replace(tmp, dst)
    return dst


def saved_format(folder: Path) -> str:
    return read_meta(folder)["format"]


def is_saved(folder: Path) -> bool:
    """Whether ``folder`` holds a model saved by :func:`save_model` (its ``compressbench.json``
    is there); for a method that caches a model of its own (e.g. in ``ctx.shared_dir``)."""
    return (Path(folder) / META).is_file()
