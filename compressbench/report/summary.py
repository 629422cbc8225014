"""From a run directory's records to the numbers every reporter shows.

``summarise(run_dir)`` reads ``results.jsonl`` (the latest record of each job) and returns a
:class:`RunSummary`: one :class:`TaskTable` per task (teacher first, then the methods in suite
order, seeds aggregated as mean ± standard deviation), an :class:`Overview` across tasks with the
GLUE macro score, and the "what to pick" answers. Reporters only format these; nothing here
knows about markdown or HTML.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressbench import kinds, results
from compressbench.errors import CompressBenchError
from compressbench.glue import GLUE
from compressbench.measure.backend import REFERENCE
from compressbench.record import BackendResult, Record
from compressbench.report import uncertainty as U
from compressbench.report.uncertainty import Comparison

TEACHER = "teacher"


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def std(values: list[float]) -> float | None:
    """Sample standard deviation; None for a single seed."""
    return statistics.stdev(values) if len(values) > 1 else None


@dataclass
class BackendRow:
    """One method on one backend: means over seeds of what each seed's job measured there."""

    backend: str
    status: str  # ok, unsupported, unavailable, failed
    reason: str | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    cpu_p50_ms: float | None = None
    speedup: float | None = None  # paired, against the teacher on the same backend
    vs_eager: float | None = None  # paired, against the teacher in PyTorch eager fp32
    cpu_vs_eager: float | None = None  # the same by process CPU time
    throughput: float | None = None
    peak_rss_mb: float | None = None
    max_logit_diff: float | None = None  # against PyTorch on dev examples (largest over seeds)
    agreement: float | None = None  # fraction of predictions equal to PyTorch's (lowest)
    runtime: dict = field(default_factory=dict)
    busy: str | None = None  # why a seed's measurement counts as taken under load
    options: dict = field(default_factory=dict)  # the backend's own settings (the suite's)

    @property
    def title(self) -> str:
        """The backend's name, with its settings where the suite gave any."""
        if not self.options:
            return self.backend
        return f"{self.backend} ({', '.join(f'{k}={v}' for k, v in self.options.items())})"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Row:
    label: str
    steps: str
    seeds: list[int]
    metrics: dict[str, list[float]]  # metric -> one value per seed
    score: list[float]  # the main metric, one per seed
    retained: float | None = None  # % of the teacher's main metric (means over seeds)
    parameters: int | None = None
    nonzero: int | None = None
    size_mb: float | None = None
    sparse_mb: float | None = None  # bitmask + non-zero values, for unstructured sparsity
    compression: float | None = None  # teacher size on disk / this size on disk
    p50_ms: float | None = None  # means over seeds of each model's own timing run
    p90_ms: float | None = None
    speedup: float | None = None  # paired where measured so, else teacher p50 / p50
    paired: bool = False
    throughput: float | None = None
    peak_rss_mb: float | None = None
    setting: str | None = None  # the grid setting chosen on validation (per seed if they differ)
    grid: list[dict] = field(default_factory=list)  # every grid record, one list per seed
    pareto_latency: bool = False  # on the front of main metric vs p50 latency
    pareto_size: bool = False  # on the front of main metric vs size on disk
    backends: dict[str, BackendRow] = field(default_factory=dict)
    home: str | None = None  # the backend p50_ms, speedup, ... above come from
    # uncertainty (report/uncertainty.py); None where the run kept no predictions
    ci: tuple[float, float] | None = None  # 95% bootstrap interval of the main metric
    seed_ci: tuple[float, float] | None = None  # t interval of the mean over seeds (2+ seeds)
    flags: list[str] = field(default_factory=list)  # uncertainty.FLAG_TEXT keys
    vs_teacher: Comparison | None = None
    vs_baseline: Comparison | None = None  # against its no-distillation student (baseline_of)
    student: dict | None = None  # what the student is (single-step rows that describe it)
    teacher_signal: bool | None = None  # the step learnt from the teacher
    step_training: dict = field(default_factory=dict)  # the step's resolved training settings
    transfer: dict | None = None  # the step's transfer set, as its first seed recorded it
    control: float | None = None  # teacher only: its paired speed-up against itself
    control_ci: tuple[float, float] | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def within_teacher(self, margin: float) -> bool:
        """The whole 95% interval of the difference from the teacher lies above ``-margin``
        points (not merely "not distinguishable")."""
        return self.vs_teacher is not None and self.vs_teacher.within(margin / 100)

    @property
    def mean_score(self) -> float:
        return mean(self.score)

    @property
    def score_std(self) -> float | None:
        return std(self.score)


@dataclass
class TaskTable:
    task: str
    kind: str
    main_metric: str
    metric_names: list[str]
    rows: list[Row] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job id, error)
    majority: float | None = None  # the main metric of always predicting the majority class
    majority_text: str = ""
    resamples: int = 0  # bootstrap resamples behind the intervals (0: no predictions kept)
    uncertainty_note: str = ""  # why intervals are missing, where they are
    within: float = 1.0  # the margin, in points (x 100), of "within N points of the teacher"
    split: str = ""  # the reported split the intervals are over
    no_baseline: dict[str, str] = field(default_factory=dict)  # label -> why it has no baseline

    @property
    def teacher(self) -> Row | None:
        return next((r for r in self.rows if r.label == TEACHER), None)

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)


@dataclass
class OverviewRow:
    label: str
    steps: str
    scores: dict[str, float]  # task -> main metric x 100 (mean over seeds)
    glue: float | None  # GLUE macro over the suite's GLUE tasks, x 100
    retained: float | None  # mean over tasks
    speedup: float | None  # geometric mean over tasks
    compression: float | None  # geometric mean over tasks


@dataclass
class Overview:
    tasks: list[str]
    glue_tasks: list[str]
    rows: list[OverviewRow]


@dataclass
class Pick:
    """One answer of "what to pick": a row, or None with the reason in ``why``; ``backend``:
    the runtime the answer is about (None: each row's home backend)."""

    question: str
    row: Row | None
    why: str = ""
    backend: str | None = None

    @property
    def measured(self) -> BackendRow | None:
        if self.row is None:
            return None
        return self.row.backends.get(self.backend or self.row.home or "")


@dataclass
class TaskPicks:
    task: str
    main_metric: str
    teacher_score: float | None
    picks: list[Pick]


@dataclass
class RunSummary:
    run_dir: Path
    suite: str
    suite_sha256: str
    env: dict
    envs: list[dict]  # every distinct environment the records came from
    tables: list[TaskTable]
    records: list[Record]
    overview: Overview | None = None
    picks: list[TaskPicks] = field(default_factory=list)
    latency_budget: float | None = None  # ms, p50 at batch 1, from the command line
    within: float = 1.0  # points of the main metric (x 100) counted as "as good as the teacher"
    show_grid: bool = False  # render every grid setting, not only the chosen one
    errors: list = field(default_factory=list)  # analysis.TaskErrors, filled by write_reports
    plots: list = field(default_factory=list)  # plots.Plot, filled by write_reports
    examples: int = 3  # examples shown per method in the error analysis
    controls: list[dict] = field(default_factory=list)  # re-timed control pairs (controls.jsonl)

    @property
    def paired(self) -> bool:
        return any(r.paired and r.label != TEACHER for t in self.tables for r in t.rows)

    @property
    def suite_versions(self) -> list[tuple[str, int]]:
        """Every suite sha256 the records were made with and how many jobs each, oldest
        first: more than one when a run was resumed with an edited suite."""
        counts: dict[str, int] = {}
        for r in sorted(self.records, key=lambda r: r.started_at):
            sha = r.suite_sha256
            counts[sha] = counts.get(sha, 0) + 1
        return list(counts.items())

    @property
    def backends(self) -> list[str]:
        """Every backend any record was measured on (or tried), torch first."""
        names = {b for t in self.tables for r in t.rows for b in r.backends}
        return sorted(names, key=lambda b: (b != REFERENCE, b))

    @property
    def started(self) -> tuple[str, str]:
        stamps = sorted(r.started_at for r in self.records if r.started_at)
        return (stamps[0], stamps[-1]) if stamps else ("", "")


# --------------------------------------------------------------------------- building

def summarise(run_dir: Path, latency_budget: float | None = None,
              within: float = 1.0) -> RunSummary:
    run_dir = Path(run_dir)
    records = [Record.from_dict(r) for r in results.latest(results.read(run_dir)).values()]
    if not records:
        raise CompressBenchError(f"{run_dir}: no results yet ({results.RESULTS} is missing or "
                                 f"empty); run a suite with --output {run_dir} first")
    tables: dict[str, TaskTable] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        table = tables.setdefault(r.task, TaskTable(r.task, r.task_kind, r.main_metric, [],
                                                    within=within))
        if not r.ok:
            table.failed.append((r.job_id, r.error or "unknown error"))
            continue
        groups.setdefault((r.task, r.label), []).append(r)
        for name, value in r.metrics.items():
            if isinstance(value, int | float) and name not in table.metric_names:
                table.metric_names.append(name)
    for (task, label), recs in groups.items():
        recs.sort(key=lambda r: r.seed)
        tables[task].rows.append(make_row(label, recs, tables[task].metric_names))
    for table in tables.values():
        table.metric_names.sort(key=lambda m: m != table.main_metric)  # the main metric first
        table.rows.sort(key=lambda row: row.label != TEACHER)  # stable: suite order kept
        relate_to_teacher(table)
        add_uncertainty(table, run_dir, {label: recs for (task, label), recs in groups.items()
                                         if task == table.task})
        mark_pareto(table)
    envs = distinct_envs(records)
    newest = max(records, key=lambda r: r.started_at)
    summary = RunSummary(run_dir, newest.suite, newest.suite_sha256,
                         envs[-1] if envs else {}, envs, list(tables.values()), records,
                         latency_budget=latency_budget, within=within)
    summary.controls = results.read_controls(run_dir)
    summary.overview = overview(summary.tables)
    summary.picks = [what_to_pick(t, latency_budget, within) for t in summary.tables]
    return summary


def make_row(label: str, recs: list[Record], metric_names: list[str]) -> Row:
    first = recs[0]
    model = first.model
    row = Row(label=label,
              steps=first.methods,
              seeds=[r.seed for r in recs],
              metrics={k: [r.metrics[k] for r in recs if k in r.metrics]
                       for k in metric_names},
              score=[r.score for r in recs],
              parameters=model.parameters,
              nonzero=model.nonzero_parameters,
              size_mb=mean([r.model.size_bytes for r in recs]) / 1e6,
              sparse_mb=(model.sparse_size_bytes or 0) / 1e6 or None,
              student=first.student, teacher_signal=first.teacher_signal,
              step_training=first.step_training, transfer=first.transfer)
    if any(r.setting is not None for r in recs):
        settings = [format_setting(r.setting or {}) for r in recs]
        row.setting = settings[0] if len(set(settings)) == 1 else "; ".join(
            f"seed {r.seed}: {text}" for r, text in zip(recs, settings))
        row.grid = [{"seed": r.seed, "grid": list(r.grid)} for r in recs]
    names: list[str] = []
    for r in recs:
        names += [n for n in r.backends if n not in names]
    names.sort(key=lambda n: (n != REFERENCE, n))  # PyTorch eager, the baseline, first
    row.backends = {n: backend_row(n, [r.backend(n) for r in recs], label == TEACHER)
                    for n in names}
    home = next((b for n, b in sorted(row.backends.items(), key=lambda kv: kv[0] != REFERENCE)
                 if b.ok), None)
    if home is not None:
        row.home = home.backend
        row.p50_ms, row.p90_ms = home.p50_ms, home.p90_ms
        row.throughput, row.peak_rss_mb = home.throughput, home.peak_rss_mb
        if home.vs_eager is not None:
            row.speedup, row.paired = home.vs_eager, True
        elif label == TEACHER and home.backend == REFERENCE:
            row.speedup, row.paired = 1.0, True
    return row


def backend_row(name: str, results: list[BackendResult | None], teacher: bool) -> BackendRow:
    """Means over seeds of one backend's results (a row is measured only if every seed is)."""
    present = [r for r in results if r is not None]
    bad = next((r for r in present if not r.ok), None)
    if bad is not None or len(present) < len(results):
        return BackendRow(name, bad.status if bad else "failed",
                          bad.why if bad else "not measured for every seed")
    out = BackendRow(name, "ok", runtime=present[0].runtime, options=present[0].options)
    out.busy = next((r.busy for r in present if r.busy), None)
    out.p50_ms = mean([r.latency_ms.p50 for r in present])
    out.p90_ms = mean([r.latency_ms.p90 for r in present])
    if all(r.cpu_ms for r in present):
        out.cpu_p50_ms = mean([r.cpu_ms.p50 for r in present])
    if all(r.examples_per_s for r in present):
        out.throughput = mean([r.examples_per_s for r in present])
    if all(r.peak_rss_mb for r in present):
        out.peak_rss_mb = max(r.peak_rss_mb for r in present)
    if all(r.paired for r in present):
        out.speedup = mean([r.paired.speedup for r in present])
    elif teacher:
        out.speedup = 1.0
    if all(r.vs_eager for r in present):
        out.vs_eager = mean([r.vs_eager.speedup for r in present])
        cpu = [r.vs_eager.cpu_speedup for r in present]
        out.cpu_vs_eager = mean(cpu) if None not in cpu else None
    elif teacher and name == REFERENCE:
        out.vs_eager = out.cpu_vs_eager = 1.0
    agreements = [r.agreement for r in present if r.agreement is not None]
    if agreements:
        out.max_logit_diff = max(a.max_abs_logit_diff for a in agreements)
        shares = [a.prediction_agreement for a in agreements]
        out.agreement = min(shares) if None not in shares else None
    return out


def relate_to_teacher(table: TaskTable) -> None:
    """Retained %, speed-up (where not paired) and compression ratio against the teacher."""
    teacher = table.teacher
    if teacher is None:
        return
    for row in table.rows:
        if teacher.mean_score > 0:  # a ratio to a score <= 0 means nothing
            row.retained = 100 * row.mean_score / teacher.mean_score
        if row.speedup is None and teacher.p50_ms and row.p50_ms:  # records without a pair
            row.speedup = teacher.p50_ms / row.p50_ms
        if teacher.size_mb and row.size_mb:
            row.compression = teacher.size_mb / row.size_mb


def add_uncertainty(table: TaskTable, run_dir: Path, recs: dict[str, list[Record]]) -> None:
    """Intervals, comparisons and flags from the predictions the run kept (see
    :mod:`compressbench.report.uncertainty`)."""
    for row in table.rows:
        row.seed_ci = U.seed_interval(row.score)
        if any(any(isinstance(v, float) and math.isnan(v) for v in r.metrics.values())
               for r in recs[row.label]):
            row.flags.append(U.NAN)
        control = [r.backend(REFERENCE).control for r in recs[row.label]
                   if r.backend(REFERENCE) is not None and r.backend(REFERENCE).control]
        if control:
            row.control = mean([c.speedup for c in control])
            cis = [c.ci for c in control if c.ci]
            row.control_ci = (min(c[0] for c in cis), max(c[1] for c in cis)) if cis else None
    refs = results.read_references(run_dir, table.task)
    if refs is None or not refs.get("splits"):
        table.uncertainty_note = "this run kept no reference labels: no intervals"
        return
    split, metric = U.split_and_metric(table.main_metric, list(refs["splits"]))
    table.split = split
    kind = kinds.get(refs["kind"])
    gold = kind.decode(refs["splits"][split]["label"], refs["labels"])
    idx = U.resamples(len(gold), f"{table.task}/{split}")
    whole = np.arange(len(gold))[None, :]
    boot: dict[str, np.ndarray] = {}
    seeds: dict[str, list[float]] = {}  # each seed's score recomputed from its predictions
    for row in table.rows:
        per_seed, scores = [], []
        for r in recs[row.label]:
            preds = (results.read_predictions(run_dir, r.job_id) or {}).get(split)
            if preds is None or len(preds) != len(gold):
                per_seed = []
                break
            preds = kind.decode(preds, refs["labels"])
            if U.is_constant(kind, preds) and U.CONSTANT not in row.flags:
                row.flags.append(U.CONSTANT)
            per_seed.append(U.metric_on(kind, metric, gold, preds, idx))
            scores.append(float(U.metric_on(kind, metric, gold, preds, whole)[0]))
        if per_seed:
            boot[row.label] = np.mean(per_seed, axis=0)  # the example level, paired
            seeds[row.label] = scores
            row.ci = U.bounded(U.interval(U.method_draws(np.array(per_seed), scores,
                                                         f"{table.task}/{row.label}")), metric)
    table.resamples = len(idx) if boot else 0
    if not boot:
        table.uncertainty_note = "this run kept no predictions: no intervals"
        return
    table.majority, table.majority_text = U.majority_baseline(kind, metric, gold)
    teacher = table.teacher
    if teacher is not None and teacher.label in boot:
        chance = U.Comparison("majority class", teacher.mean_score - table.majority,
                              U.interval(boot[teacher.label] - table.majority), 0.0)
        if not chance.distinguishable or chance.diff <= 0:
            teacher.flags.append(U.CHANCE)
    if any(r.label != TEACHER and r.teacher_signal is None and "→" not in r.steps
           for r in table.rows):
        table.no_baseline[""] = ("the records do not describe their students (made before "
                                 "compressbench recorded them: run the suite again for the "
                                 "comparisons with the no-distillation student)")
    for row in table.rows:
        if row.label not in boot or row is teacher:
            continue
        if teacher is not None and teacher.label in boot:
            row.vs_teacher = U.compare(TEACHER, boot[row.label], boot[teacher.label],
                                       seeds[row.label], seeds[teacher.label],
                                       f"{table.task}/{row.label}", row.score, teacher.score)
        base = baseline_of(table, row)
        if base is not None and base.label in boot:
            row.vs_baseline = U.compare(base.label, boot[row.label], boot[base.label],
                                        seeds[row.label], seeds[base.label],
                                        f"{table.task}/{row.label}", row.score, base.score)


def baseline_of(table: TaskTable, row: Row) -> Row | None:
    """The no-distillation row that differs from ``row`` only by the teacher: a single step
    that did not learn from the teacher, with an equal student description (class, shape,
    initialisation rule and source) and equal resolved training settings (a transfer set
    aside: what the teacher labels is the distillation's part); the first in suite order.
    None, with the reason in ``table.no_baseline``, for a distilled row without one."""
    if row.label == TEACHER or row.teacher_signal is not True:
        return None  # the teacher, a baseline itself, a chain or a transform of the teacher
    if row.student is None:
        return None  # a transform of the teacher (or a method that describes no student)
    for other in table.rows:
        if other is not row and other.teacher_signal is False and \
                other.student == row.student and \
                recipe(other.step_training) == recipe(row.step_training):
            return other
    table.no_baseline[row.label] = (f"no row trains the same student ({student_text(row)}) "
                                    f"with the same training settings on labels alone")
    return None


def recipe(settings: dict) -> dict:
    """A step's training settings without its transfer set (None for a method without one)."""
    return {k: v for k, v in settings.items() if k != "transfer"}


def student_text(row: Row) -> str:
    s = row.student or {}
    return ", ".join(f"{k} {v}" for k, v in s.items() if v is not None)


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, score) points: True where no other point is at most as costly and at least
    as good, and strictly better in one of the two."""
    out = []
    for i, (c, s) in enumerate(points):
        dominated = any((c2 <= c and s2 >= s) and (c2 < c or s2 > s)
                        for j, (c2, s2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def mark_pareto(table: TaskTable) -> None:
    """The Pareto fronts, among the models not flagged (a model predicting one class is on
    no front, however fast)."""
    timed = [r for r in table.rows if r.p50_ms is not None and not r.flagged]
    for row, on in zip(timed, pareto([(r.p50_ms, r.mean_score) for r in timed])):
        row.pareto_latency = on
    sized = [r for r in table.rows if r.size_mb is not None and not r.flagged]
    for row, on in zip(sized, pareto([(r.size_mb, r.mean_score) for r in sized])):
        row.pareto_size = on


def distinct_envs(records: list[Record]) -> list[dict]:
    """The environments the records were measured in, oldest first, each once (with the
    runtime versions each backend recorded)."""
    out: list[dict] = []
    for r in sorted(records, key=lambda r: r.started_at):
        env = r.env
        runtimes = {p: v for b in r.backends.values() for p, v in b.versions.items() if v}
        if env and runtimes:
            env = {**env, "versions": {**env.get("versions", {}), **runtimes}}
        if env and env not in out:
            out.append(env)
    return out


# --------------------------------------------------------------------------- across tasks

def glue_task_score(task: str, metrics: dict) -> float | None:
    """GLUE's per-task score (Wang et al. 2019, Table 1 and §4): CoLA MCC; SST-2, QNLI, RTE and
    WNLI accuracy; MRPC and QQP the mean of accuracy and F1; STS-B the mean of Pearson and
    Spearman; MNLI the mean of matched and mismatched accuracy. Not every metric a task
    reports counts: CoLA's accuracy is shown but is not part of its GLUE score."""
    spec = GLUE[task]
    splits = spec.eval_files
    scored = spec.glue_score or spec.metrics
    names = [m if len(splits) == 1 else f"{m}_{s}" for m in scored for s in splits]
    values = [metrics[n] for n in names if n in metrics]
    return mean(values) if len(values) == len(names) else None


def glue_row_score(task: str, row: Row) -> float | None:
    """A row's GLUE task score, the mean over its seeds."""
    per_seed = [glue_task_score(task, dict(zip(row.metrics, values)))
                for values in zip(*row.metrics.values())]
    return mean(per_seed) if per_seed and None not in per_seed else None


def geomean(values: list[float]) -> float | None:
    return math.exp(mean([math.log(v) for v in values])) if values else None


def overview(tables: list[TaskTable]) -> Overview | None:
    """One row per method across tasks; None for a single-task run."""
    if len(tables) < 2:
        return None
    tasks = [t.task for t in tables]
    glue_tasks = [t for t in tasks if t in GLUE]
    labels: list[str] = []
    for t in tables:
        labels += [r.label for r in t.rows if r.label not in labels]
    rows = []
    for label in labels:
        present = [(t, t.row(label)) for t in tables if t.row(label) is not None]
        scores = {t.task: 100 * r.mean_score for t, r in present}
        glue = None
        if glue_tasks and all(t.task in scores for t in tables if t.task in glue_tasks):
            per_task = [glue_row_score(t.task, r) for t, r in present if t.task in glue_tasks]
            if per_task and None not in per_task:
                glue = 100 * mean(per_task)
        steps = present[0][1].steps
        rows.append(OverviewRow(
            label, steps, scores, glue,
            retained=mean(v) if (v := [r.retained for _, r in present
                                       if r.retained is not None]) else None,
            speedup=geomean([r.speedup for _, r in present if r.speedup]),
            compression=geomean([r.compression for _, r in present if r.compression])))
    return Overview(tasks, glue_tasks, rows)


# --------------------------------------------------------------------------- what to pick

def what_to_pick(table: TaskTable, budget: float | None, within: float) -> TaskPicks:
    """Per task: the fastest and the smallest model within ``within`` points of the teacher
    (the teacher itself when no compressed model beats it), and the best under ``budget`` ms."""
    teacher = table.teacher
    if teacher is None:
        return TaskPicks(table.task, table.main_metric, None,
                         [Pick("all", None, "no teacher result in this run")])
    if U.CHANCE in teacher.flags:
        return TaskPicks(table.task, table.main_metric, teacher.mean_score,
                         [Pick("all", None, f"the teacher is not distinguishable from the "
                                            f"majority-class baseline ({table.majority:.4f}): "
                                            f"nothing here is worth picking")])
    close = [r for r in table.rows if is_close(r, teacher, within)]  # the teacher is in
    picks = []
    timed = [r for r in close if r.speedup is not None]
    fastest = max(timed, key=lambda r: r.speedup) if timed else None
    picks.append(Pick(f"fastest within {within:g} point of the teacher", fastest,
                      why_teacher(table, close, fastest, "faster")))
    sized = [r for r in close if r.size_mb is not None]
    smallest = min(sized, key=lambda r: (r.size_mb, r.label != TEACHER)) if sized else None
    picks.append(Pick(f"smallest within {within:g} point of the teacher", smallest,
                      why_teacher(table, close, smallest, "smaller")))
    runtimes = sorted({b for r in table.rows for b in r.backends},
                      key=lambda b: (b != REFERENCE, b))
    if len(runtimes) > 1:
        for name in runtimes:
            on = [r for r in close if name in r.backends and r.backends[name].ok
                  and r.backends[name].vs_eager is not None]
            best = max(on, key=lambda r: r.backends[name].vs_eager) if on else None
            why = "" if best else f"no model within the margin was measured on {name}"
            picks.append(Pick(f"fastest within {within:g} point on {name}", best, why, name))
    if budget is not None:
        fits = [r for r in table.rows if r.p50_ms is not None and r.p50_ms <= budget
                and not r.flagged]
        timed_all = [r.p50_ms for r in table.rows if r.p50_ms is not None]
        why = ""
        if not fits:
            why = (f"no model's p50 is at most {budget:g} ms (fastest: {min(timed_all):.2f} ms)"
                   if timed_all else "nothing was timed (measure: enabled: false)")
        picks.append(Pick(f"best under {budget:g} ms p50 (batch 1)",
                          max(fits, key=lambda r: r.mean_score) if fits else None, why))
    return TaskPicks(table.task, table.main_metric, teacher.mean_score, picks)


def is_close(row: Row, teacher: Row, within: float) -> bool:
    """Within ``within`` points of the teacher: the lower end of the paired interval of the
    difference, where the run kept predictions, else the point estimate; never a flagged
    model."""
    if row.flagged:
        return False
    if row is teacher:
        return True
    if row.vs_teacher is not None:
        return row.within_teacher(within)
    return row.mean_score >= teacher.mean_score - within / 100


def why_teacher(table: TaskTable, close: list[Row], pick: Row | None, better: str) -> str:
    if pick is None:
        return "nothing was measured"
    if pick.label != TEACHER:
        return ""
    others = [r for r in table.rows if r.label != TEACHER]
    if not others:
        return "no compressed model in this run"
    if len(close) == 1:
        best = max([r for r in others if not r.flagged] or others, key=lambda r: r.mean_score)
        if best.vs_teacher is not None:
            return (f"no compressed model is within the margin with 95% confidence (closest: "
                    f"{best.label}, {100 * best.mean_score:.1f}, whose difference from the "
                    f"teacher may be as low as {100 * best.vs_teacher.ci[0]:.1f} points)")
        return (f"no compressed model is within the margin (closest: {best.label}, "
                f"{100 * best.mean_score:.1f})")
    return f"no compressed model within the margin is {better}"


def format_setting(setting: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())
