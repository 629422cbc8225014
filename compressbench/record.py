"""The result record, typed: what the report, ``export`` and the CLI read, by field.

``results.jsonl`` holds one JSON object per job (written by the runner); :meth:`Record.of`
turns one into frozen dataclasses. Records of compressbench 0.2 (one PyTorch measurement under
``measure``) read as a ``torch`` backend result, so old run directories still render.

A new backend needs nothing here (its results are :class:`BackendResult` under its name); a new
per-backend number goes into :class:`BackendResult` and :meth:`BackendResult.of` once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compressbench.measure.backend import REFERENCE
from compressbench.measure.trackers import Summary

OK = "ok"


def summary(d: dict | None) -> Summary | None:
    return Summary(**d) if d else None


@dataclass(frozen=True)
class Speedup:
    """A paired speed-up: the model and a reference timed alternately on the same examples."""

    reference: str  # "teacher" (same backend) or "teacher on torch" (the common baseline)
    speedup: float  # reference p50 / model p50, wall time
    cpu_speedup: float | None  # the same ratio of process CPU time per call
    model_ms: Summary | None
    reference_ms: Summary | None
    ci: tuple[float, float] | None = None  # 95% bootstrap interval over the timed examples

    @classmethod
    def of(cls, d: dict | None) -> Speedup | None:
        if not d:
            return None
        ci = d.get("ci95")
        return cls(d.get("reference", "teacher"), d["speedup"], d.get("cpu_speedup"),
                   summary(d.get("model_ms")), summary(d.get("reference_ms")),
                   tuple(ci) if ci else None)


@dataclass(frozen=True)
class Agreement:
    """A backend's outputs against PyTorch's on dev examples."""

    examples: int
    max_abs_logit_diff: float
    prediction_agreement: float | None  # None for regression

    @classmethod
    def of(cls, d: dict | None) -> Agreement | None:
        return cls(d["examples"], d["max_abs_logit_diff"], d.get("prediction_agreement")) \
            if d else None


@dataclass(frozen=True)
class BackendResult:
    backend: str
    # "ok"; "unsupported": cannot run this model; "unavailable": not installed here;
    # "failed": an error while preparing or timing
    status: str
    reason: str | None = None  # why not measured (unsupported, unavailable, failed)
    latency: Summary | None = None  # batch 1, wall ms
    cpu: Summary | None = None  # batch 1, process CPU ms
    samples_ms: tuple[float, ...] = ()
    throughput: float | None = None  # examples/s at the throughput batch size
    peak_rss_mb: float | None = None
    model_rss_mb: float | None = None
    paired: Speedup | None = None  # against the teacher on the same backend
    vs_eager: Speedup | None = None  # against the teacher in PyTorch eager (fp32)
    control: Speedup | None = None  # the teacher against a second copy of itself (1.00x)
    agreement: Agreement | None = None  # against PyTorch, for models PyTorch also runs
    versions: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)  # e.g. OpenVINO's inference precision
    prepare: dict = field(default_factory=dict)  # export facts (time, fusions)
    load: dict = field(default_factory=dict)  # the machine's load while timing (measure.load)
    options: dict = field(default_factory=dict)  # the backend's own settings (measure.backends)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def busy(self) -> str | None:
        """Why this measurement counts as taken under load, or None."""
        from compressbench.measure.load import busy_reason

        return busy_reason(self.load)

    @classmethod
    def of(cls, name: str, d: dict) -> BackendResult:
        status = d.get("status", OK)
        memory = d.get("memory_mb") or {}
        return cls(
            backend=name, status=status, reason=d.get("reason") or d.get("error"),
            latency=summary(d.get("latency_ms")), cpu=summary(d.get("cpu_ms")),
            samples_ms=tuple(d.get("latency_samples_ms") or ()),
            throughput=(d.get("throughput") or {}).get("examples_per_s"),
            peak_rss_mb=memory.get("peak_rss"), model_rss_mb=memory.get("model_rss"),
            paired=Speedup.of(d.get("paired")), vs_eager=Speedup.of(d.get("vs_eager")),
            control=Speedup.of(d.get("control")),
            agreement=Agreement.of(d.get("agreement")), versions=d.get("versions") or {},
            runtime=d.get("runtime") or {}, prepare=d.get("prepare") or {},
            load=d.get("load") or {}, options=d.get("options") or {})


@dataclass(frozen=True)
class ModelStats:
    parameters: int
    nonzero_parameters: int
    size_bytes: int
    sparse_size_bytes: int | None
    format: str
    dtypes: dict

    @classmethod
    def of(cls, d: dict | None) -> ModelStats | None:
        if not d:
            return None
        return cls(d["parameters"], d.get("nonzero_parameters", d["parameters"]),
                   d["size_bytes"], d.get("sparse_size_bytes"), d.get("format", ""),
                   d.get("dtypes") or {})


def backends_of(measure: dict | None) -> dict[str, BackendResult]:
    if not measure:
        return {}
    if "backends" not in measure:  # compressbench 0.2: one torch measurement
        old = dict(measure)
        if old.get("paired"):
            old["vs_eager"] = old["paired"]
        return {REFERENCE: BackendResult.of(REFERENCE, {**old, "versions": {}})}
    return {name: BackendResult.of(name, d) for name, d in measure["backends"].items()}


@dataclass(frozen=True)
class Record:
    """One job's result (a task, a method entry or the teacher, a seed)."""

    job_id: str
    task: str
    label: str
    seed: int
    status: str
    error: str | None
    main_metric: str
    task_kind: str
    metrics: dict
    score: float | None
    model: ModelStats | None
    backends: dict[str, BackendResult]
    steps: tuple[dict, ...]
    setting: dict | None
    grid: tuple[dict, ...]
    suite: str
    suite_sha256: str
    started_at: str
    wall_s: float | None
    env: dict
    data: dict
    model_dir: str | None
    key: str
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def methods(self) -> str:
        return " → ".join(s["method"] for s in self.steps)

    def backend(self, name: str) -> BackendResult | None:
        return self.backends.get(name)

    def _step_info(self, key: str):
        log = self.raw.get("training")
        if len(self.steps) != 1 or not isinstance(log, list) or len(log) != 1 or \
                not isinstance(log[0], dict):
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
    def of(cls, d: dict[str, Any]) -> Record:
        return cls(
            job_id=d["job_id"], task=d["task"], label=d.get("label", ""), seed=d.get("seed", 0),
            status=d.get("status", "failed"), error=d.get("error"),
            main_metric=d.get("main_metric", ""), task_kind=d.get("task_kind", ""),
            metrics=d.get("metrics") or {}, score=d.get("score"),
            model=ModelStats.of(d.get("model")), backends=backends_of(d.get("measure")),
            steps=tuple(d.get("steps") or ()), setting=d.get("setting"),
            grid=tuple(d.get("grid") or ()), suite=d.get("suite", ""),
            suite_sha256=d.get("suite_sha256", ""), started_at=d.get("started_at", ""),
            wall_s=d.get("wall_s"), env=d.get("env") or {}, data=d.get("data") or {},
            model_dir=d.get("model_dir"), key=d.get("key", ""), raw=d)
