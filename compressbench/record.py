"""The result record: one typed :class:`Record` per job, written and read through the same
dataclasses.

``results.jsonl`` holds one JSON object per job. The job's process builds a :class:`Record`;
the runner appends ``record.to_dict()``; every reader (the report, ``export``, the CLI, hooks)
gets ``Record.from_dict(line)``. Field names are the JSON keys, so there is one schema; keys a
class does not know are kept in its ``extra`` and written back. ``SCHEMA`` is written into
every record; reading migrates older ones: compressbench 0.2's single PyTorch measurement under
``measure`` reads as a ``torch`` backend result, so old run directories still render. The
layout is documented as a JSON Schema shipped in the package,
``compressbench/schemas/result-record.schema.json`` (``schema_path("result-record")``).

A new backend needs nothing here (its results are :class:`BackendResult` under its name); a new
per-backend number goes into :class:`BackendResult` once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from compressbench.measure.backend import REFERENCE
from compressbench.measure.trackers import Summary

OK = "ok"


def schema_path(name: str = "result-record"):
    """The JSON Schema file of ``results.jsonl`` lines (``"result-record"``) or of
    ``report.json`` (``"report"``), shipped in the package."""
    from pathlib import Path
    return Path(__file__).parent / "schemas" / f"{name}.schema.json"

#: the record layout this version writes (1: compressbench 0.2, one measurement under
#: ``measure``; 2: ``measure.backends``; 3: the ``schema`` key itself)
SCHEMA = 3


def summary(d: dict | None) -> Summary | None:
    return Summary(**d) if d else None


def empty(value: Any) -> bool:
    return value is None or (isinstance(value, dict | list | tuple | str) and not value)


def written(values: dict, present: frozenset) -> dict:
    """The keys to write: those with a value, and those the record was read with (so a key
    keeps its place, null or empty, across a read and a write)."""
    return {k: v for k, v in values.items() if not empty(v) or k in present}


@dataclass(frozen=True)
class Speedup:
    """A paired speed-up: the model and a reference timed alternately on the same examples."""

    reference: str  # "teacher" (same backend) or "teacher on torch" (the common baseline)
    speedup: float  # reference p50 / model p50, wall time
    cpu_speedup: float | None  # the same ratio of process CPU time per call
    model_ms: Summary | None
    reference_ms: Summary | None
    ci95: tuple[float, float] | None = None  # 95% bootstrap interval over the timed examples
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default=frozenset(), compare=False, repr=False)

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.ci95

    @classmethod
    def from_dict(cls, d: dict | None) -> Speedup | None:
        if not d:
            return None
        present = frozenset(d)
        d = dict(d)
        ci = d.pop("ci95", None)
        return cls(d.pop("reference", "teacher"), d.pop("speedup"), d.pop("cpu_speedup", None),
                   summary(d.pop("model_ms", None)), summary(d.pop("reference_ms", None)),
                   tuple(ci) if ci else None, d, present)

    def to_dict(self) -> dict:
        return {**written({
            "reference": self.reference, "speedup": self.speedup,
            "cpu_speedup": self.cpu_speedup,
            "model_ms": asdict(self.model_ms) if self.model_ms else None,
            "reference_ms": asdict(self.reference_ms) if self.reference_ms else None,
            "ci95": list(self.ci95) if self.ci95 else None}, self.present), **self.extra}


@dataclass(frozen=True)
class Agreement:
    """A backend's outputs against PyTorch's on dev examples."""

    examples: int
    max_abs_logit_diff: float
    prediction_agreement: float | None  # None for regression

    @classmethod
    def from_dict(cls, d: dict | None) -> Agreement | None:
        return cls(d["examples"], d["max_abs_logit_diff"], d.get("prediction_agreement")) \
            if d else None


@dataclass(frozen=True)
class BackendResult:
    """One model measured on one backend (``record.measure.backends[name]``); field names are
    the JSON keys the measuring process writes."""

    backend: str
    # "ok"; "unsupported": cannot run this model; "unavailable": not installed here;
    # "failed": an error while preparing or timing
    status: str = OK
    reason: str | None = None  # why not measured (unsupported, unavailable)
    error: str | None = None  # what went wrong (failed)
    latency_ms: Summary | None = None  # batch 1, wall ms
    cpu_ms: Summary | None = None  # batch 1, process CPU ms
    latency_samples_ms: tuple[float, ...] = ()
    throughput: dict = field(default_factory=dict)  # batch_size, examples, examples_per_s
    memory_mb: dict = field(default_factory=dict)  # peak_rss, model_rss, baseline_rss, ...
    paired: Speedup | None = None  # against the teacher on the same backend
    vs_eager: Speedup | None = None  # against the teacher in PyTorch eager (fp32)
    control: Speedup | None = None  # the teacher against a second copy of itself (1.00x)
    agreement: Agreement | None = None  # against PyTorch, for models PyTorch also runs
    versions: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)  # e.g. OpenVINO's inference precision
    prepare: dict = field(default_factory=dict)  # export facts (time, fusions)
    load: dict = field(default_factory=dict)  # the machine's load while timing (measure.load)
    options: dict = field(default_factory=dict)  # the backend's own settings (measure.backends)
    threads: int | None = None
    cpu: str | None = None  # the CPU's model name
    mean_tokens: float | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept
    present: frozenset = field(default=frozenset(), compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Measured (``status`` is ``"ok"``)."""
        return self.status == OK

    @property
    def why(self) -> str | None:
        """Why it was not measured, or what went wrong."""
        return self.reason or self.error

    @property
    def examples_per_s(self) -> float | None:
        """Throughput at the throughput batch size."""
        return self.throughput.get("examples_per_s")

    @property
    def peak_rss_mb(self) -> float | None:
        """The measuring process's peak resident memory, MB (every backend's process imports
        the same before it loads the model)."""
        return self.memory_mb.get("peak_rss")

    @property
    def model_rss_mb(self) -> float | None:
        """The resident memory that loading the model added, MB."""
        return self.memory_mb.get("model_rss")

    @property
    def busy(self) -> str | None:
        """Why this measurement counts as taken under load, or None."""
        from compressbench.measure.load import busy_reason

        return busy_reason(self.load)

    @classmethod
    def from_dict(cls, name: str, d: dict) -> BackendResult:
        """The result a record keeps under ``measure.backends[name]``."""
        present = frozenset(d)
        d = dict(d)
        return cls(
            backend=name, status=d.pop("status", OK), reason=d.pop("reason", None),
            error=d.pop("error", None),
            latency_ms=summary(d.pop("latency_ms", None)), cpu_ms=summary(d.pop("cpu_ms", None)),
            latency_samples_ms=tuple(d.pop("latency_samples_ms", None) or ()),
            throughput=d.pop("throughput", None) or {}, memory_mb=d.pop("memory_mb", None) or {},
            paired=Speedup.from_dict(d.pop("paired", None)),
            vs_eager=Speedup.from_dict(d.pop("vs_eager", None)),
            control=Speedup.from_dict(d.pop("control", None)),
            agreement=Agreement.from_dict(d.pop("agreement", None)),
            versions=d.pop("versions", None) or {}, runtime=d.pop("runtime", None) or {},
            prepare=d.pop("prepare", None) or {}, load=d.pop("load", None) or {},
            options=d.pop("options", None) or {}, threads=d.pop("threads", None),
            cpu=d.pop("cpu", None), mean_tokens=d.pop("mean_tokens", None), extra=d,
            present=present)

    def to_dict(self) -> dict:
        """The JSON object :meth:`from_dict` reads (unknown keys read are written back)."""
        out = {"status": self.status, "reason": self.reason, "error": self.error,
               "latency_ms": asdict(self.latency_ms) if self.latency_ms else None,
               "cpu_ms": asdict(self.cpu_ms) if self.cpu_ms else None,
               "latency_samples_ms": list(self.latency_samples_ms),
               "throughput": self.throughput, "memory_mb": self.memory_mb,
               "paired": self.paired.to_dict() if self.paired else None,
               "vs_eager": self.vs_eager.to_dict() if self.vs_eager else None,
               "control": self.control.to_dict() if self.control else None,
               "agreement": asdict(self.agreement) if self.agreement else None,
               "versions": self.versions, "runtime": self.runtime, "prepare": self.prepare,
               "load": self.load, "options": self.options, "threads": self.threads,
               "cpu": self.cpu, "mean_tokens": self.mean_tokens}
        return {**written(out, self.present | {"status"}), **self.extra}


@dataclass(frozen=True)
class ModelStats:
    parameters: int
    nonzero_parameters: int
    size_bytes: int
    sparse_size_bytes: int | None
    format: str
    dtypes: dict
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | None) -> ModelStats | None:
        if not d:
            return None
        d = dict(d)
        params = d.pop("parameters")
        return cls(params, d.pop("nonzero_parameters", params), d.pop("size_bytes"),
                   d.pop("sparse_size_bytes", None), d.pop("format", ""),
                   d.pop("dtypes", None) or {}, d)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {**out, **self.extra}


@dataclass(frozen=True)
class Measurement:
    """``record.measure``: the settings it ran with and one result per backend."""

    backends: dict[str, BackendResult] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    start: Any = None  # the run's clock and load when the job's measurement began
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict | None) -> Measurement | None:
        if not d:
            return None
        d = dict(d)
        if "backends" not in d:  # compressbench 0.2: one torch measurement
            settings, start = d.pop("settings", None) or {}, d.pop("start", None)
            if d.get("paired"):
                d["vs_eager"] = d["paired"]
            return cls({REFERENCE: BackendResult.from_dict(REFERENCE, d)}, settings, start)
        present = frozenset(d)
        return cls({name: BackendResult.from_dict(name, b)
                    for name, b in (d.pop("backends") or {}).items()},
                   d.pop("settings", None) or {}, d.pop("start", None), d, present)

    def to_dict(self) -> dict:
        return {**written({"settings": self.settings, "start": self.start}, self.present),
                "backends": {n: b.to_dict() for n, b in self.backends.items()}, **self.extra}


#: the top-level keys, in the order a record is written
_ORDER = ("schema", "job_id", "key", "suite", "suite_sha256", "task", "label", "seed", "teacher",
          "steps", "main_metric", "task_kind", "data", "env", "started_at", "grid", "setting",
          "metrics", "score", "model", "measure", "training", "cache_dir", "model_dir",
          "status", "error", "traceback", "wall_s", "quiet")


@dataclass(frozen=True)
class Record:
    """One job's result (a task, a method entry or the teacher, a seed)."""

    job_id: str
    task: str
    label: str = ""
    seed: int = 0
    status: str = "failed"
    error: str | None = None
    traceback: str | None = None
    key: str = ""
    suite: str = ""
    suite_sha256: str = ""
    teacher: str = ""
    main_metric: str = ""
    task_kind: str = ""
    metrics: dict = field(default_factory=dict)
    score: float | None = None
    model: ModelStats | None = None
    measure: Measurement | None = None
    steps: tuple[dict, ...] = ()
    setting: dict | None = None
    grid: tuple[dict, ...] = ()
    training: tuple[dict, ...] = ()  # per step: method, params, runs, build time, student ...
    started_at: str = ""
    wall_s: float | None = None
    env: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    cache_dir: str | None = None
    model_dir: str | None = None
    quiet: dict = field(default_factory=dict)  # time a local worker spent paused
    schema: int = SCHEMA
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept
    present: frozenset = field(default=frozenset(), compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """The job finished (``status`` is ``"ok"``; else ``error`` says why not)."""
        return self.status == OK

    @property
    def methods(self) -> str:
        """The job's steps, ``"finetune → quant-dynamic"``."""
        return " → ".join(s["method"] for s in self.steps)

    @property
    def backends(self) -> dict[str, BackendResult]:
        """Every backend the model was measured on (or tried), by name."""
        return self.measure.backends if self.measure else {}

    def backend(self, name: str) -> BackendResult | None:
        """The result on backend ``name`` (``"torch"``, ``"onnxruntime"``, ...), or None."""
        return self.backends.get(name)

    def replace(self, **changes) -> Record:
        """A copy with ``changes`` (field values)."""
        return replace(self, **changes)

    def _step_info(self, key: str):
        log = self.training
        if len(self.steps) != 1 or len(log) != 1 or not isinstance(log[0], dict):
            return None
        return log[0].get(key)

    @property
    def student(self) -> dict | None:
        """What a single-step job's student is (``Context.describe_student``); None for the
        teacher, chains, methods that transform the teacher, and records made before students
        were described."""
        value = self._step_info("student")
        return value if isinstance(value, dict) else None

    @property
    def transfer(self) -> dict | None:
        """What a single-step job's transfer set held (``Context.transfer_set``: examples per
        source, the total, leaks dropped, labelling time); None without one."""
        value = self._step_info("transfer")
        return value if isinstance(value, dict) else None

    @property
    def teacher_signal(self) -> bool | None:
        """Whether the single step learnt from the teacher (``Method.uses_teacher``)."""
        value = self._step_info("teacher_signal")
        return value if isinstance(value, bool) else None

    @property
    def step_training(self) -> dict:
        """The single step's training settings as resolved (suite, method defaults and the
        entry's overrides), else, in older records, the entry's overrides."""
        value = self._step_info("settings")
        if not isinstance(value, dict):
            value = self.steps[0].get("training") if len(self.steps) == 1 else None
        return value if isinstance(value, dict) else {}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """A record as read from ``results.jsonl`` (any earlier layout, migrated)."""
        present = frozenset(d)
        d = dict(d)
        training = d.pop("training", None)
        return cls(
            job_id=d.pop("job_id"), task=d.pop("task"), label=d.pop("label", ""),
            seed=d.pop("seed", 0), status=d.pop("status", "failed"), error=d.pop("error", None),
            traceback=d.pop("traceback", None), key=d.pop("key", ""), suite=d.pop("suite", ""),
            suite_sha256=d.pop("suite_sha256", ""), teacher=d.pop("teacher", ""),
            main_metric=d.pop("main_metric", ""), task_kind=d.pop("task_kind", ""),
            metrics=d.pop("metrics", None) or {}, score=d.pop("score", None),
            model=ModelStats.from_dict(d.pop("model", None)),
            measure=Measurement.from_dict(d.pop("measure", None)),
            steps=tuple(d.pop("steps", None) or ()), setting=d.pop("setting", None),
            grid=tuple(d.pop("grid", None) or ()),
            training=tuple(training) if isinstance(training, list) else (),
            started_at=d.pop("started_at", ""), wall_s=d.pop("wall_s", None),
            env=d.pop("env", None) or {}, data=d.pop("data", None) or {},
            cache_dir=d.pop("cache_dir", None), model_dir=d.pop("model_dir", None),
            quiet=d.pop("quiet", None) or {}, schema=SCHEMA, extra=_without(d, "schema"),
            present=present)

    def to_dict(self) -> dict:
        """The record as ``results.jsonl`` holds it (empty fields left out)."""
        values = {f: getattr(self, f) for f in _ORDER}
        values["model"] = self.model.to_dict() if self.model else None
        values["measure"] = self.measure.to_dict() if self.measure else None
        for name in ("steps", "grid", "training"):
            values[name] = list(values[name])
        always = {"schema", "job_id", "key", "task", "label", "seed", "status"}
        return {**written(values, self.present | always), **self.extra}


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}
