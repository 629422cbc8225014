"""The plan: a suite expanded into pure-data job specifications before anything runs.

Per task: the teacher's job, then one job per method entry and seed. A :class:`Job` holds only
data (names, each step resolved once: typed parameters, training settings and cache key; the
ids of the jobs it waits for), so any process, on any machine, can run it with :func:`compressbench.execute.execute`; the executors
(:mod:`compressbench.executors`) hand out the jobs whose dependencies are done.

Every produced model is cached under ``CACHE/models/<key>``, where the key hashes everything
that determines it: the teacher, the task's data, the method and its parameters, the training
settings, the seed and the previous chain step. A job waits for the task's teacher and for the
earlier job that builds a model it reuses (``pkd3-int8`` starts from the model ``pkd-skip-3L``
builds), so no model is ever built twice at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from compressbench import schema
from compressbench.plugins import PluginManager
from compressbench.suite import (
    Step,
    Suite,
    Training,
    UserTask,
    grid_settings,
    method_params,
    with_setting,
)
from compressbench.tasks import Task, file_task

CACHE_VERSION = 3  # bump when the training loop or saved formats change a cached model
TEACHER_LABEL = "teacher"


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Planned(NamedTuple):
    """One step of a job, resolved against the plugins: what to run, with what, and where it
    is cached."""

    step: Step
    method: Any
    params: Any
    training: Training
    key: str


class Resolved:
    """One step of a job as the planner resolved it, once: the method's typed parameters, the
    training settings (the suite's, the method's defaults, the entry's), and the cache key of
    the step's model. A worker runs it as it is (it re-derives the key only to check that its
    plugins agree with the planner's).

    Pickled (to a worker process or a node), the parameters travel as their class's import path
    and field values and are typed again on first use, after the worker has loaded the run's
    plugins (a ``--plugin`` file's ``Params`` class is importable only then)."""

    __slots__ = ("step", "training", "key", "_params")

    def __init__(self, step: Step, params: Any, training: Training, key: str):
        self.step, self._params, self.training, self.key = step, params, training, key

    @property
    def params(self) -> Any:
        if isinstance(self._params, _ParamsRef):
            self._params = self._params.load()
        return self._params

    def __reduce__(self):
        return (Resolved, (self.step, _ParamsRef.of(self._params), self.training, self.key))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resolved) and (self.step, self.training, self.key) == \
            (other.step, other.training, other.key) and self.params == other.params

    __hash__ = None  # type: ignore[assignment] - mutable (typed again on first use)

    def __repr__(self) -> str:
        return f"Resolved({self.step.method!r}, key={self.key!r})"


class _ParamsRef(NamedTuple):
    """A method's ``Params`` in transit: its class's module and name, and its field values."""

    module: str
    qualname: str
    fields: dict

    @classmethod
    def of(cls, params: Any) -> Any:
        if isinstance(params, _ParamsRef) or not dataclasses.is_dataclass(params):
            return params
        t = type(params)
        return cls(t.__module__, t.__qualname__,
                   {f.name: getattr(params, f.name) for f in dataclasses.fields(params)})

    def load(self) -> Any:
        import importlib
        target: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            target = getattr(target, part)
        return target(**self.fields)


class Variant(NamedTuple):
    """One grid setting of a job (the job itself when it has no grid)."""

    setting: dict  # grid key -> value; keys are prefixed "method." inside multi-step chains
    steps: tuple[Step, ...]
    keys: tuple[str, ...] = ()  # the cache key of each step's model
    resolved: tuple[Resolved, ...] = ()  # each step resolved by the planner


@dataclass(frozen=True)
class Job:
    """One row of the results: a task, a method entry (or the teacher) and a seed; with the
    plan's facts once :func:`plan_task` made it."""

    task: str
    label: str
    seed: int
    steps: tuple[Step, ...]
    key: str = ""  # the record's key: a finished record with this key means "done"
    variants: tuple[Variant, ...] = ()
    teacher_key: str | None = None  # the cache key of the task's teacher (None: this is it)
    after: tuple[str, ...] = ()  # ids of the jobs that must finish first

    @property
    def id(self) -> str:
        return f"{self.task}/{self.label}/seed{self.seed}"

    @property
    def is_teacher(self) -> bool:
        return self.teacher_key is None and self.label == TEACHER_LABEL


def resolve_task(suite: Suite, item: str | UserTask, pm: PluginManager) -> Task:
    if isinstance(item, str):
        return pm.tasks.get(item, f"{suite.path}: tasks")
    base = suite.base
    files = {"train": base / item.train, "dev": base / item.dev}
    if item.validation:
        files["validation"] = base / item.validation
    return file_task(item.name, item.kind, files, item.text_columns, item.label_column,
                     item.labels, item.metrics, item.encoding)


def teacher_identity(ref: str) -> dict:
    """What determines the pretrained teacher: its path's files, or its Hub id."""
    path = Path(ref)
    if path.is_dir():
        files = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file())
        return {"path": str(path), "files": files}
    return {"hub_id": ref}


def expand_grid(steps: tuple[Step, ...], pm: PluginManager) -> list[Variant]:
    """A job's grid expanded: the product of every step's grid settings."""
    per_step = []
    for step in steps:
        method = pm.methods.get(step.method)
        prefix = f"{step.method}." if len(steps) > 1 else ""
        per_step.append([({f"{prefix}{k}": v for k, v in setting.items()},
                          with_setting(step, method, setting) if step.grid else step)
                         for setting in grid_settings(step)])
    out = []
    for combo in itertools.product(*per_step):
        setting = {k: v for part, _ in combo for k, v in part.items()}
        out.append(Variant(setting, tuple(step for _, step in combo)))
    return out


def plan_steps(suite: Suite, pm: PluginManager, seed: int, steps: tuple[Step, ...],
               start: str) -> list[Planned]:
    """Each step with its parameters, training settings and cache key (chained from
    ``start``: the task's base key for the teacher, the teacher's key for the rest)."""
    planned, prev = [], start
    for step in steps:
        method = pm.methods.get(step.method)
        params = method_params(method, step, str(suite.path))
        defaults = getattr(method, "training_defaults", {})  # the suite's entry wins
        cfg = suite.training_for({**defaults, **step.training}, step.where)
        if cfg.transfer is not None and not trains_on_transfer(method, params):
            cfg = dataclasses.replace(cfg, transfer=None)  # a suite-wide set: not this step's business
        prev = step_key(prev, step.method, method, params, cfg, seed)
        planned.append(Planned(step, method, params, cfg, prev))
    return planned


def step_key(prev: str, name: str, method: Any, params: Any, cfg: Training, seed: int) -> str:
    """The cache key of a step's model: the previous step's key, the method (name, version
    and the digest of its plugin's source files, so an edit to its code builds the model
    again), its parameters, the training settings that make a model, and the seed."""
    from compressbench.plugins import source_digest
    return digest(prev, name, getattr(method, "version", "1"), source_digest(method),
                  schema.as_dict(params), key_settings(cfg, uses_transfer(method)), seed)


def uses_transfer(method: Any) -> bool:
    """Whether ``method`` trains on a transfer set (``Method.uses_transfer``)."""
    return bool(getattr(method, "uses_transfer", False))


def trains_on_transfer(method: Any, params: Any) -> bool:
    """Whether the step trains on its transfer set: a method that uses one (``uses_transfer``),
    with parameters under which it learns from the teacher (a labels-only baseline such as
    ``distilbert`` with ``alpha_ce: 0, alpha_cos: 0`` ignores a suite-wide set, as ``finetune``
    does)."""
    teacher = getattr(method, "uses_teacher", None)
    return uses_transfer(method) and (teacher is None or bool(teacher(params)))


def key_settings(cfg: Training, transfer: bool = False) -> dict:
    """The training settings that make a model: all but the device (hardware, like the
    thread count), the precision only when it is not fp32, and the transfer set only for a
    method that uses one, with its file's digest for its path (the keys before these
    existed stay the same)."""
    out = schema.as_dict(cfg)
    del out["device"]
    if out["precision"] == "fp32":
        del out["precision"]
    spec = out.pop("transfer", None)
    if transfer and cfg.transfer is not None and not cfg.transfer.empty:
        if cfg.transfer.file is not None:
            from compressbench.transfer import file_digest
            spec = {**spec, "file": file_digest(cfg.transfer.file)}
        out["transfer"] = spec
    return out


def base_key(teacher_ref: str, task: Task, fingerprint: str, max_len: int) -> str:
    return digest(CACHE_VERSION, teacher_identity(teacher_ref), task.name, fingerprint, max_len)


def plan_task(suite: Suite, pm: PluginManager, teacher_ref: str, task: Task, data) -> list[Job]:
    """The task's jobs, teacher first, each with its variants' cache keys, its record key and
    the jobs it waits for. ``data``: the task's prepared :class:`~compressbench.data.TaskData`
    (its fingerprint and split sizes go into the keys)."""
    start = base_key(teacher_ref, task, data.fingerprint, suite.training.max_seq_length)
    seed = suite.teacher.seed if suite.teacher.seed is not None else suite.seeds[0]
    teacher_steps = (Step("finetune", {}, dict(suite.teacher.training), "teacher"),)
    entries = [(TEACHER_LABEL, seed, teacher_steps)] + [
        (m.label, s, m.steps) for m in suite.methods for s in m.seeds_in(suite)]
    measure = schema.as_dict(suite.measure)
    if not measure.get("backend_options"):  # the keys of runs made before backends had
        measure.pop("backend_options", None)  # settings stay the same
    sizes = {s: len(e) for s, e in data.evals.items()}
    jobs: list[Job] = []
    builder: dict[str, str] = {}  # cache key -> id of the first job that builds it
    teacher_key = None
    for label, job_seed, steps in entries:
        is_teacher = teacher_key is None
        grid = [Variant({}, steps)] if is_teacher else expand_grid(steps, pm)
        variants = []
        for v in grid:
            steps_planned = plan_steps(suite, pm, job_seed, v.steps,
                                       start if is_teacher else teacher_key)
            variants.append(v._replace(
                keys=tuple(p.key for p in steps_planned),
                resolved=tuple(Resolved(p.step, p.params, p.training, p.key)
                               for p in steps_planned)))
        job_id = Job(task.name, label, job_seed, steps).id
        after = [] if is_teacher else [jobs[0].id]
        for key in (k for v in variants for k in v.keys):
            first = builder.setdefault(key, job_id)
            if first != job_id and first not in after:
                after.append(first)
        job_key = digest([v.keys[-1] for v in variants], measure, data.fingerprint, sizes,
                         task.metrics)
        jobs.append(Job(task.name, label, job_seed, steps, job_key, tuple(variants),
                        teacher_key, tuple(after)))
        if is_teacher:
            teacher_key = variants[0].keys[-1]
    return jobs
