"""The report's tables as cells (text plus the raw value to sort by), shared by the markdown
and HTML reporters so the two always show the same numbers."""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from compressbench import kinds
from compressbench.measure.backend import REFERENCE
from compressbench.report.analysis import TaskErrors
from compressbench.report.summary import TEACHER, RunSummary, TaskTable, format_setting, mean


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | str | None = None  # what an HTML table sorts by; None: the text
    numeric: bool = False


@dataclass
class Table:
    head: list[str]
    rows: list[list[Cell]]

    def numeric(self, i: int) -> bool:
        """Right-align column ``i``: it holds numbers."""
        return any(row[i].numeric for row in self.rows)


def text(value) -> Cell:
    return Cell("" if value is None else str(value))


def num(value, spec: str, suffix: str = "") -> Cell:
    return Cell("–" if value is None else f"{value:{spec}}{suffix}", value, True)


def fmt_values(values: list[float], digits: int = 4) -> str:
    """One value per seed as ``mean ± standard deviation`` (the value alone for one seed)."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def values_cell(values: list[float]) -> Cell:
    return Cell(fmt_values(values), mean(values) if values else None, True)


def ci_cell(row) -> Cell:
    if row.ci is None:
        return Cell("–", None, True)
    return Cell(f"[{row.ci[0]:.4f}, {row.ci[1]:.4f}]", row.ci[0], True)


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def points(value: float) -> str:
    return f"{100 * value:+.1f}".replace("-", "−")


def verdict(c, margin: float | None = None) -> str:
    """What a comparison says, in the words every output uses: ``within N point(s)`` (of the
    teacher: the whole interval above -margin), else ``better`` / ``worse`` (the interval
    excludes 0), else ``not distinguishable``."""
    if margin is not None and c.within(margin / 100):
        return f"within {margin:g} point{'s' if margin != 1 else ''}"
    if c.distinguishable:
        return "better" if c.diff > 0 else "worse"
    return "not distinguishable"


def comparison_text(c, margin: float | None = None) -> str:
    """▲/▼ where the 95% interval of the difference excludes 0, ≈ where it does not; the
    difference and its interval in points (× 100), p, the verdict (``within`` a margin, or
    for ≈ the smallest difference the run could have detected), and ``model-level`` where a
    side has one seed (a claim about those trained models, not about the methods)."""
    if c is None:
        return ""
    mark = {1: "▲", -1: "▼", 0: "≈"}[c.sign]
    text = f"{mark} {points(c.diff)} [{points(c.ci[0])}, {points(c.ci[1])}] ({p_text(c.p)})"
    if margin is not None and c.within(margin / 100):
        text += f", {verdict(c, margin)}"
    elif not c.distinguishable:
        text += ", not distinguishable"
        if c.detectable:
            text += f": could not detect less than {100 * c.detectable:.1f}"
    if c.level == "model":
        text += " · model-level"
    return text


def baseline_text(row) -> str:
    c = row.vs_baseline
    return "" if c is None else f"{comparison_text(c)} vs {c.other}"


def retained_cell(row) -> Cell:
    return num(row.retained, ".1f")


def flags_text(row) -> str:
    from compressbench.report.uncertainty import FLAG_TEXT

    return "; ".join(f"⚑ {FLAG_TEXT[f]}" for f in row.flags)


def pareto_text(row) -> str:
    return ", ".join(name for name, on in (("latency", row.pareto_latency),
                                           ("size", row.pareto_size)) if on)


# --------------------------------------------------------------------------- per task

def task_table(table: TaskTable) -> Table:
    grid = any(r.setting is not None for r in table.rows)
    sparse = any(r.sparse_mb is not None for r in table.rows)
    timed = any(r.p50_ms is not None for r in table.rows)
    homes = {r.home for r in table.rows if r.home}
    where = timed and (len(homes) > 1 or homes != {REFERENCE})
    uncertain = table.resamples > 0
    baseline = any(r.vs_baseline is not None for r in table.rows)
    head = (["method", "steps"] + (["chosen setting"] if grid else []) + ["seeds"] +
            table.metric_names +
            ([f"{table.main_metric} 95% CI", "vs teacher"] if uncertain else []) +
            (["vs no-distillation student"] if baseline else []) +
            ["retained %", "params", "non-zero", "size MB"] +
            (["sparse MB"] if sparse else []) + ["compression"] + (["backend"] if where else []) +
            (["p50 ms", "p90 ms", "speed-up", "ex/s (batch)", "peak RSS MB"] if timed else []) +
            ["Pareto front", "flags"])
    rows = []
    for r in table.rows:
        rows.append([text(r.label), text(r.steps)] + ([text(r.setting or "")] if grid else []) +
                    [num(len(r.seeds), "d")] +
                    [values_cell(r.metrics.get(k, [])) for k in table.metric_names] +
                    ([ci_cell(r), text(comparison_text(r.vs_teacher, table.within))]
                     if uncertain else []) +
                    ([text(baseline_text(r))] if baseline else []) +
                    [retained_cell(r), num(r.parameters, ",d"), num(r.nonzero, ",d"),
                     num(r.size_mb, ".1f")] + ([num(r.sparse_mb, ".1f")] if sparse else []) +
                    [num(r.compression, ".2f", "×")] + ([text(r.home or "")] if where else []) +
                    ([num(r.p50_ms, ".2f"), num(r.p90_ms, ".2f"), num(r.speedup, ".2f", "×"),
                      num(r.throughput, ".1f"), num(r.peak_rss_mb, ".0f")] if timed else []) +
                    [text(pareto_text(r)), text(flags_text(r))])
    return Table(head, rows)


def backend_table(table: TaskTable) -> Table | None:
    """One row per method and backend it was measured on (None when only PyTorch eager ran):
    latency, CPU time, both paired speed-ups, and how far the backend's outputs are from
    PyTorch's."""
    if not any(b != REFERENCE for r in table.rows for b in r.backends):
        return None
    head = ["method", "backend", table.main_metric, "p50 ms", "p90 ms", "CPU p50 ms",
            "speed-up (same backend)", "speed-up vs eager", "CPU speed-up vs eager",
            "ex/s (batch)", "peak RSS MB", "max |Δ logit| vs torch", "agreement vs torch"]
    loaded = any(b.busy for r in table.rows for b in r.backends.values())
    if loaded:  # only in runs where some measurement was taken under load
        head.append("measured under load")
    rows = []
    for r in table.rows:
        for b in r.backends.values():
            if not b.ok:
                continue
            rows.append([text(r.label), text(b.title),
                         Cell(f"{r.mean_score:.4f}", r.mean_score, True),
                         num(b.p50_ms, ".2f"), num(b.p90_ms, ".2f"), num(b.cpu_p50_ms, ".2f"),
                         num(b.speedup, ".2f", "×"), num(b.vs_eager, ".2f", "×"),
                         num(b.cpu_vs_eager, ".2f", "×"), num(b.throughput, ".1f"),
                         num(b.peak_rss_mb, ".0f"), num(b.max_logit_diff, ".2g"),
                         num(None if b.agreement is None else 100 * b.agreement, ".1f", "%")]
                        + ([text(f"yes: {b.busy}" if b.busy else "–")] if loaded else []))
    return Table(head, rows)


def not_measured(table: TaskTable) -> list[str]:
    """Each (method, backend) pair without numbers, and why."""
    return [f"{esc(r.label)} on {esc(b.backend)}: {b.status}, {esc(b.reason or '')}"
            for r in table.rows for b in r.backends.values() if not b.ok]


BACKEND_NOTE = (
    "Per backend: speed-up (same backend) = the teacher's p50 on that backend / the model's, "
    "and speed-up vs eager = the teacher's p50 in PyTorch eager fp32 / the model's on this "
    "backend, each with the two timed alternately on the same examples; CPU speed-ups are the "
    "same ratios of process CPU time per call (steadier than wall time on a shared machine). "
    "The main metric is the one PyTorch computed, except for models that exist only for one "
    "runtime (quant-ort, quant-openvino), which that runtime scored; max |Δ logit| and "
    "agreement compare the backend's outputs with PyTorch's on dev examples.")


SPARSE_NOTE = ("sparse MB: rows with unstructured sparsity also stored as a bitmask plus the "
               "non-zero values (`sparse.safetensors`). Their latency is measured on the dense "
               "model with dense kernels, which skip no zeros: unstructured sparsity shrinks "
               "storage, not latency.")


PAIRED_ROW_NOTE = ("speed-up: the teacher and the model timed alternately on the same "
                   "examples in one process, which cancels drift between jobs; p50/p90 are "
                   "each model's own run, so their ratio can differ from the speed-up on a "
                   "noisy machine.")


MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def esc(value: object) -> str:
    """A value from the records (a label, a name, an environment string) made inert inside the
    notes, which are markdown (``code``, **bold**): its markdown characters are backslash-escaped
    and newlines become spaces. The HTML reporter escapes for HTML and drops the backslashes."""
    return MD_SPECIAL.sub(r"\\\1", str(value)).replace("\r", " ").replace("\n", " ")


def uncertainty_note(table: TaskTable) -> str:
    if not table.resamples:
        return f"No intervals: {table.uncertainty_note}." if table.uncertainty_note else ""
    note = (f"95% CI: for one seed, the percentile interval of the main metric over "
            f"{table.resamples} bootstrap resamples of the reported split's examples (sentences "
            f"for entity F1, pairs for correlations), the same resamples for every model; for "
            f"several seeds, a two-level bootstrap of the mean over seeds: those example "
            f"resamples plus the seeds' spread (s/√S times Student's t with S−1 degrees of "
            f"freedom), so it covers where the method's mean would land with other seeds. vs "
            f"teacher, vs no-distillation student: the difference of the means in points (× 100), "
            f"its 95% interval from the same two levels (paired examples; seeds by Welch) and "
            f"p. ▲ or ▼: the interval excludes 0. \"within {table.within:g} point\": the whole "
            f"interval lies above −{table.within:g} (the rule of what to pick; not being "
            f"distinguishable is not enough). ≈ … not distinguishable: with the smallest "
            f"difference this run could have detected (80% power, 5% level, from its examples "
            f"and seeds). model-level: one side has a single seed, so the comparison is about "
            f"those trained models, not the methods. The no-distillation student is the row "
            f"that trains the same student (class, shape, initialisation) with the same "
            f"settings on labels alone; rows that describe no student (transforms of the "
            f"teacher, chains) are compared with the teacher only.")
    missing = sorted(table.no_baseline.items())
    if missing:
        note += " No no-distillation student: " + "; ".join(
            f"{esc(label)}: {esc(why)}" if label else esc(why) for label, why in missing) + "."
    if table.majority is not None:
        note += (f" Majority-class baseline ({esc(table.majority_text)}): "
                 f"{table.main_metric} {table.majority:.4f}.")
    return note


def flags_note(table: TaskTable) -> str:
    from compressbench.report.uncertainty import FLAG_TEXT

    flagged = [(r.label, f) for r in table.rows for f in r.flags]
    if not flagged:
        return ""
    return ("**flagged** (never picked below): " +
            "; ".join(f"{esc(label)}: {FLAG_TEXT[f]}" for label, f in flagged) + ".")


def table_notes(table: TaskTable) -> list[str]:
    notes = [n for n in (uncertainty_note(table), flags_note(table)) if n]
    if any(r.paired and r.label != TEACHER for r in table.rows):
        notes.append(PAIRED_ROW_NOTE)
    if any(r.home and r.home != REFERENCE for r in table.rows):
        notes.append("backend: where p50, speed-up, throughput and memory were measured (PyTorch "
                     "eager where it runs the model, else the runtime the model was made for); "
                     "speed-up is against the teacher in PyTorch eager fp32.")
    if any(r.sparse_mb is not None for r in table.rows):
        notes.append(SPARSE_NOTE)
    transfer = transfer_note(table)
    if transfer:
        notes.append(transfer)
    capped = sorted({r.step_training.get("max_eval_samples") for r in table.rows
                     if isinstance(r.step_training.get("max_eval_samples"), int)})
    if capped:
        notes.append(f"**Not comparable with full runs**: the reported split was cut to at most "
                     f"{', '.join(f'{n:,}' for n in capped)} examples (`max_eval_samples`, or "
                     f"`--limit`): a quick look; published and full-split scores use all of "
                     f"it.")
    return notes


def transfer_note(table: TaskTable) -> str | None:
    """Which rows trained on a transfer set, of what (README, "Transfer sets"): the baselines
    they are compared with did not, so the reader must know."""
    groups: dict[str, list[str]] = {}
    for row in table.rows:
        info = row.transfer
        if not info or not info.get("transfer"):
            continue
        sources = ", ".join(f"{name} {n:,}" for name, n in (info.get("sources") or {}).items())
        what = (f"{info.get('labelled', 0):,} labelled examples plus {info['transfer']:,} the "
                f"teacher labelled ({sources}"
                + (f"; {info['leaks_dropped']:,} dropped as validation or reported texts"
                   if info.get("leaks_dropped") else "") + ")")
        groups.setdefault(what, []).append(row.label)
    if not groups:
        return None
    parts = [f"{', '.join(f'`{label}`' for label in labels)} on {what}"
             for what, labels in groups.items()]
    return ("Transfer sets: " + "; ".join(parts) + " (counts of the first seed). Every other "
            "row trained without one; a row's no-distillation baseline differs from it by the "
            "teacher, and so by the transfer set the teacher labelled.")


def grid_tables(table: TaskTable) -> list[tuple[str, Table]]:
    """Per method with a grid: every setting tried and its validation score per seed."""
    out = []
    for row in table.rows:
        if not row.grid:
            continue
        settings = [format_setting(g["setting"]) for g in row.grid[0]["grid"]]
        body = []
        for i, setting in enumerate(settings):
            cells = [text(setting)]
            for per_seed in row.grid:
                g = per_seed["grid"][i]
                cells.append(Cell(f"{g['val_score']:.4f}{' ✓' if g.get('chosen') else ''}",
                                  g["val_score"], True))
            body.append(cells)
        out.append((f"{row.label}: grid on validation ({table.main_metric}; ✓ chosen)",
                    Table(["setting"] + [f"seed {g['seed']}" for g in row.grid], body)))
    return out


# --------------------------------------------------------------------------- across tasks

def overview_table(summary: RunSummary) -> Table | None:
    ov = summary.overview
    if ov is None:
        return None
    main = {t.task: t.main_metric for t in summary.tables}
    glue = bool(ov.glue_tasks)
    head = (["method", "steps"] + [f"{t} ({main[t]})" for t in ov.tasks] +
            ([f"GLUE macro ({len(ov.glue_tasks)} tasks)"] if glue else []) +
            ["retained % (mean)", "speed-up (geo-mean)", "compression (geo-mean)"])
    rows = [[text(r.label), text(r.steps)] +
            [num(r.scores.get(t), ".1f") for t in ov.tasks] +
            ([num(r.glue, ".1f")] if glue else []) +
            [num(r.retained, ".1f"), num(r.speedup, ".2f", "×"), num(r.compression, ".2f", "×")]
            for r in ov.rows]
    return Table(head, rows)


def overview_note(summary: RunSummary) -> str:
    ov = summary.overview
    note = "Task columns: the main metric × 100, mean over seeds."
    if ov and ov.glue_tasks:
        note += (f" GLUE macro: the mean over {', '.join(ov.glue_tasks)} of each task's GLUE "
                 f"score as the GLUE paper defines it (CoLA: MCC alone; MRPC and QQP: mean of "
                 f"accuracy and F1; STS-B: mean of Pearson and Spearman; MNLI: mean of matched "
                 f"and mismatched; the others: accuracy); it covers only the GLUE tasks this "
                 f"suite ran, so it is not the 9-task GLUE leaderboard score. Empty where a "
                 f"method lacks one of those tasks.")
    return note


def picks_table(summary: RunSummary) -> Table:
    """The answers first (the column a narrow screen keeps in view), each with its difference
    from the teacher: the 95% interval and the verdict the pick rests on."""
    head = ["pick", "task", "question", "vs teacher (points, 95% CI)", "backend", "main metric",
            "retained %", "speed-up vs eager", "p50 ms", "size MB", "note"]
    rows = []
    for tp in summary.picks:
        for pick in tp.picks:
            r = pick.row
            if r is None:
                rows.append([text("none"), text(tp.task), text(pick.question), text(""),
                             text("")] + [num(None, "")] * 5 + [text(pick.why)])
                continue
            b = pick.measured
            c = r.vs_teacher
            versus = text(comparison_text(c, summary.within) if c is not None
                          else ("the teacher" if r.label == TEACHER else ""))
            rows.append([text(r.label), text(tp.task), text(pick.question), versus,
                         text(b.backend if b else ""),
                         Cell(f"{r.mean_score:.4f}", r.mean_score, True),
                         num(r.retained, ".1f"),
                         num(b.vs_eager if b else r.speedup, ".2f", "×"),
                         num(b.p50_ms if b else r.p50_ms, ".2f"), num(r.size_mb, ".1f"),
                         text(pick.why)])
    return Table(head, rows)


def picks_note(summary: RunSummary) -> str:
    note = (f"Within {summary.within:g} point: a model qualifies when the lower end of the "
            f"95% interval of its difference from the teacher (the two-level bootstrap over the "
            f"reported split's examples and the seeds, as in the tables) is at most "
            f"{summary.within:g} point (× 100) below zero: the data rule out a larger loss, "
            f"not only the point estimate. Where "
            f"a run kept no predictions, the point estimate decides (the note says so). "
            f"Flagged models (constant predictions, a NaN metric) are never picked, and no "
            f"model is picked for a task whose teacher is at chance level. Fastest: the highest "
            f"speed-up against the teacher in PyTorch eager fp32 (the common baseline), on the "
            f"model's own backend or on the backend the question names. Smallest: the least "
            f"size on disk.")
    if summary.latency_budget is None:
        note += (" Add `--latency-budget MS` to `compressbench report` for the best model "
                 "under a latency budget.")
    else:
        note += f" Budget: p50 latency at batch 1 at most {summary.latency_budget:g} ms."
    return note


# --------------------------------------------------------------------------- error analysis

def per_class_table(errors: TaskErrors) -> Table:
    """One row per method: P / R / F1 per class (or MAE per band), and the flips against the
    teacher."""
    if errors.methods[0].bands:  # a score: errors per band of the gold score
        bands = [b.name for b in errors.methods[0].bands]
        head = ["method", "seed"] + [f"MAE gold {b}" for b in bands] + [
            "within 0.5", "teacher close → far", "far → close"]
        rows = []
        for m in errors.methods:
            by = {b.name: b for b in m.bands}
            n = sum(b.n for b in m.bands)
            rows.append([text(m.label), num(m.seed, "d")] +
                        [num(by[b].mae if b in by else None, ".3f") for b in bands] +
                        [num(sum(b.close * b.n for b in m.bands) / n if n else None, ".1%"),
                         flip_cell(m, "flips"), flip_cell(m, "rescues")])
        return Table(head, rows)
    names = [c.name for c in errors.methods[0].per_class]
    head = ["method", "seed"] + [f"{n} P / R / F1" for n in names] + [
        "teacher right → wrong", "wrong → right"]
    rows = []
    for m in errors.methods:
        by = {c.name: c for c in m.per_class}
        rows.append([text(m.label), num(m.seed, "d")] +
                    [Cell(f"{by[n].precision:.2f} / {by[n].recall:.2f} / {by[n].f1:.2f}",
                          by[n].f1, True) if n in by else text("–") for n in names] +
                    [flip_cell(m, "flips"), flip_cell(m, "rescues")])
    return Table(head, rows)


def flip_cell(m, attr: str) -> Cell:
    return text("") if m.label == TEACHER else num(getattr(m, attr), "d")


SMALL = 3  # up to this many classes, every method's confusion matrix fits in one table


def confusion_overview(errors: TaskErrors) -> Table | None:
    """Every method's confusion matrix as one row (gold → predicted counts), for few classes."""
    if not errors.methods or errors.methods[0].confusion is None or \
            len(errors.classes) > SMALL:
        return None
    pairs = [(g, p) for g in range(len(errors.classes)) for p in range(len(errors.classes))]
    head = ["method"] + [f"{errors.classes[g]} → {errors.classes[p]}" for g, p in pairs]
    return Table(head, [[text(m.label)] + [num(m.confusion[g][p], "d") for g, p in pairs]
                        for m in errors.methods])


def confusion_table(errors: TaskErrors, m) -> Table | None:
    """One method's confusion matrix, for tasks with more classes than SMALL."""
    if m.confusion is None or len(errors.classes) <= SMALL:
        return None
    head = ["gold ↓ / predicted →"] + errors.classes
    rows = [[text(g)] + [num(v, "d") for v in row] for g, row in zip(errors.classes, m.confusion)]
    return Table(head, rows)


def examples_table(errors: TaskErrors) -> Table | None:
    """The sampled examples the teacher gets right and each method gets wrong."""
    if not any(m.examples for m in errors.methods):
        return None
    what = kinds.get(errors.kind).unit
    head = ["method", "text", f"gold {what}", f"teacher {what}", f"method's {what}"]
    rows = [[text(m.label), text(x["text"]), text(x["gold"]), text(x["teacher"]),
             text(x["method"])] for m in errors.methods for x in m.examples]
    return Table(head, rows)


def errors_intro(errors: TaskErrors, summary: RunSummary) -> str:
    if not errors.methods:
        return f"Not available: {esc(errors.note)}"
    kind = kinds.get(errors.kind)
    what, counted = kind.analysis_text, kind.flip_text
    text_ = (f"Split `{errors.split}` ({errors.n} examples), each method's first seed against "
             f"the teacher: {what}. \"Teacher right → wrong\" counts {counted} (\"wrong → "
             f"right\" the reverse); up to {summary.examples} of them are shown per method.")
    return text_ + (f" {esc(errors.note)}." if errors.note else "")


# --------------------------------------------------------------------------- environment

def env_lines(summary: RunSummary) -> list[str]:
    env = summary.env
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    first, last = summary.started
    n_ok = sum(1 for r in summary.records if r.ok)
    lines = [(f"suite: {esc(summary.suite)}, file `suite.yaml` in the run directory, newest sha256 "
             f"`{esc(summary.suite_sha256)}`"),
             (f"jobs: {n_ok} ok, {len(summary.records) - n_ok} failed; started "
             f"{first or '?'} … {last or '?'}"),
             (f"CPU: {esc(env.get('cpu', '?'))}, {esc(env.get('cores', '?'))} cores"
              f"{cpu_id_text(env.get('cpu_id'))}; platform {esc(env.get('platform', '?'))}; "
              f"Python {esc(env.get('python', '?'))}"),
             (f"threads: training {env.get('train_threads', '?')}, latency "
             f"{env.get('measure_threads', '?')}"),
             "latency: batch 1, real sequence lengths, tokenization not timed, one process per "
             "model" + (PAIRED_NOTE if summary.paired else ""),
             f"versions: {versions}"]
    lines += control_lines(summary)
    lines += load_lines(summary)
    lines += second_control_lines(summary)
    versions = summary.suite_versions
    if len(versions) > 1:
        lines.append(f"**warning**: the records come from {len(versions)} versions of the suite "
                     f"(it was edited between runs): " + "; ".join(
                         f"sha256 `{esc(sha[:12])}` ({n} jobs)" for sha, n in versions) +
                     "; `suite.yaml` is the newest; compare rows made with the same version")
    if len(summary.envs) > 1:
        keys = sorted({k for e in summary.envs for k in e if
                       len({repr(x.get(k)) for x in summary.envs}) > 1})
        lines.append(f"**warning**: the records come from {len(summary.envs)} different "
                     f"environments (differing: {', '.join(keys)}); compare timings only "
                     f"within one")
    options = "".join(f" {flag} {value:g}" for flag, value, default in (
        ("--latency-budget", summary.latency_budget, None), ("--within", summary.within, 1.0),
        ("--examples", summary.examples, 3)) if value is not None and value != default)
    lines.append(reproduce_line(summary, options))
    return lines


def reproduce_line(summary: RunSummary, options: str) -> str:
    """The command that runs the suite again (the run's own invocation: data directory,
    plugin files, the folder the suite's paths start from), with the installed plugins it
    needs; a generic one for runs that did not keep their invocation."""
    from compressbench import reproduce
    commands = reproduce.lines(summary.run_dir, options)
    if commands is None:
        return (f"reproduce: `compressbench run RUN_DIR/suite.yaml --data-dir DATA_DIR "
                f"--output NEW_RUN_DIR`, then `compressbench report NEW_RUN_DIR{options}` "
                f"(this report's options)")
    needs = reproduce.installed(summary.env)
    return (f"reproduce: {code(commands[0])}, then {code(commands[1])} "
            f"(this report's options)" + (f"; with the installed plugins it loaded: "
                                          f"{code('pip install ' + ' '.join(needs))}" if needs
                                          else ""))


def code(text: str) -> str:
    """``text`` as a markdown code span, copied exactly as written (no escapes inside one);
    escaped plain text where a backtick or a line break in it would end the span."""
    if "`" in text or "\n" in text or "\r" in text:
        return esc(text)
    return f"`{text}`"


def cpu_id_text(cpu_id) -> str:
    """' (family 25, model 1; ISA avx2 avx512f ...)' from the environment's ``cpu_id``."""
    if not isinstance(cpu_id, dict) or not cpu_id:
        return ""
    ident = ", ".join(f"{k.replace('_', ' ')} {esc(v)}" for k, v in cpu_id.items()
                      if k in ("cpu_family", "model", "cpu_implementer", "cpu_part"))
    isa = " ".join(esc(f) for f in cpu_id.get("isa") or []) or "none of those checked"
    return f" ({ident + '; ' if ident else ''}ISA: {isa})"


def control_lines(summary: RunSummary) -> list[str]:
    """The latency protocol's self-check: the teacher timed against a second copy of itself
    (1.00× if the machine was steady)."""
    checks = [(t.task, t.teacher) for t in summary.tables
              if t.teacher is not None and t.teacher.control is not None]
    if not checks:
        return []
    text_ = "; ".join(f"{esc(task)} {row.control:.2f}×" + (
        f" [{row.control_ci[0]:.2f}, {row.control_ci[1]:.2f}]" if row.control_ci else "")
        for task, row in checks)
    lines = [f"latency control (the teacher paired against itself, ideally 1.00×, with its "
             f"95% bootstrap interval over the timed examples): {text_}"]
    off = [task for task, row in checks if row.control_ci and
           not row.control_ci[0] <= 1.0 <= row.control_ci[1]]
    if off:
        lines.append(f"**warning**: the latency control is off 1.00× by more than its own "
                     f"noise for {', '.join(esc(t) for t in off)}: the machine was busy while "
                     f"measuring, and speed-ups there carry at least that much error; measure "
                     f"again on an idle machine")
    return lines


def load_lines(summary: RunSummary) -> list[str]:
    """The machine's background load during the measurements (recorded per measurement since
    compressbench 0.3), and which ones were taken under load."""
    measured = [(r, b) for r in summary.records if r.ok for b in r.backends.values()
                if b.ok and b.load]
    if not measured:
        return []

    def span(key: str, fmt: str) -> str | None:
        values = [b.load[key] for _, b in measured if b.load.get(key) is not None]
        return f"{min(values):{fmt}}–{max(values):{fmt}}" if values else None

    parts = [f"other processes {span('other_cores', '.2f')} cores"
             if span("other_cores", ".2f") else None,
             f"CPU pressure {span('cpu_pressure_pct', '.1f')}% of the time"
             if span("cpu_pressure_pct", ".1f") else None,
             f"load average {span('loadavg_1m', '.2f')}" if span("loadavg_1m", ".2f") else None]
    lines = [f"load while timing ({len(measured)} measurements, each over its own timed "
             f"window): " + "; ".join(p for p in parts if p)]
    busy = [(r, b) for r, b in measured if b.busy]
    if busy:
        shown = ", ".join(f"{esc(r.job_id)} on {esc(b.backend)} ({esc(b.busy)})"
                          for r, b in busy[:5]) + (f" and {len(busy) - 5} more"
                                                   if len(busy) > 5 else "")
        lines.append(f"**warning**: {len(busy)} of {len(measured)} measurements were taken "
                     f"under load: {shown}. A speed-up between two different models can move "
                     f"with background load (the teacher-against-itself control cannot show "
                     f"it); measure again on a quiet machine before quoting them")
    return lines


def second_control_lines(summary: RunSummary) -> list[str]:
    """The teacher against its own ONNX Runtime export, timed with the teacher's job and again
    at the end of the run: two *different* models, so unlike the teacher-against-itself
    control it moves when the machine's load changes."""
    lines = []
    for c in summary.controls:
        start, end = c.get("start") or {}, c.get("end") or {}
        if not start.get("speedup") or not end.get("speedup"):
            continue
        text_ = (f"{esc(c.get('task', '?'))}: {esc(c.get('pair', ''))} "
                 f"{start['speedup']:.2f}× {fmt_ci(start.get('ci95'))} with the teacher's job, "
                 f"{end['speedup']:.2f}× {fmt_ci(end.get('ci95'))} at the end of the run")
        lines.append(f"latency control, different models: {text_}")
        a, b = start.get("ci95"), end.get("ci95")
        if a and b and (a[1] < b[0] or b[1] < a[0]):
            seen = [x for x in (start.get("load"), end.get("load")) if x]
            quiet = seen and all((x.get("other_cores") or 0) < 0.25 for x in seen)
            why = ("although the load this run could see stayed low (a cause outside the "
                   "machine's view, such as a neighbour on the same host, or the CPU's clock)"
                   if quiet else "the machine's load changed during the run")
            lines.append(f"**warning**: that control moved by more than its intervals "
                         f"({esc(c.get('task', '?'))}), {why}: speed-ups of jobs measured at "
                         f"different times differ by that much; measure again before quoting "
                         f"a difference of that size")
    return lines


def fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


PAIRED_NOTE = ("; speed-up = teacher p50 / model p50 with the two timed alternately on the "
               "same examples in one process (paired), so drift between jobs cancels out; "
               "the p50/p90 columns are each model's own run")
