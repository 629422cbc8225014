"""Comparison tables from a run directory: summarising, then reporters (markdown, HTML).

``summarise(run_dir)`` turns the records into one table per task (teacher first, then the
methods in suite order, seeds aggregated); reporters only format that table. Reporters are
plugins: this module registers ``md`` and ``html`` through ``register_reporters``.
"""
from __future__ import annotations

import html
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from compressbench import results
from compressbench.errors import CompressBenchError
from compressbench.hookspecs import hookimpl


@dataclass
class Row:
    label: str
    steps: str
    seeds: list[int]
    metrics: dict[str, list[float]]  # metric -> one value per seed
    score: list[float]
    retained: float | None = None  # % of the teacher's main metric (mean over seeds)
    parameters: int | None = None
    nonzero: int | None = None
    size_mb: float | None = None
    sparse_mb: float | None = None  # bitmask + non-zero values, for unstructured sparsity
    p50_ms: float | None = None
    p90_ms: float | None = None
    speedup: float | None = None
    paired_speedup: float | None = None  # the teacher and this model timed alternately
    throughput: float | None = None
    peak_rss_mb: float | None = None
    setting: str | None = None  # the grid setting chosen on validation (per seed if they differ)
    grid: list[dict] = field(default_factory=list)  # every grid record, one list per seed


@dataclass
class TaskTable:
    task: str
    main_metric: str
    metric_names: list[str]
    rows: list[Row] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job id, error)


@dataclass
class RunSummary:
    run_dir: Path
    suite: str
    suite_sha256: str
    env: dict
    tables: list[TaskTable]
    records: list[dict]
    show_grid: bool = False  # render every grid setting, not only the chosen one


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def summarise(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    records = list(results.latest(results.read(run_dir)).values())
    if not records:
        raise CompressBenchError(f"{run_dir}: no results yet ({results.RESULTS} is missing or "
                                 f"empty); run a suite with --output {run_dir} first")
    tables: dict[str, TaskTable] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        table = tables.setdefault(r["task"], TaskTable(r["task"], r["main_metric"], []))
        if r.get("status") != "ok":
            table.failed.append((r["job_id"], r.get("error", "unknown error")))
            continue
        groups.setdefault((r["task"], r["label"]), []).append(r)
        for name, value in r["metrics"].items():
            if isinstance(value, int | float) and name not in table.metric_names:
                table.metric_names.append(name)
    for (task, label), recs in groups.items():
        first = recs[0]
        m = first.get("measure") or {}
        row = Row(label=label,
                  steps=" → ".join(s["method"] for s in first["steps"]),
                  seeds=[r["seed"] for r in recs],
                  metrics={k: [r["metrics"][k] for r in recs if k in r["metrics"]]
                           for k in tables[task].metric_names},
                  score=[r["score"] for r in recs],
                  parameters=first["model"]["parameters"],
                  nonzero=first["model"]["nonzero_parameters"],
                  size_mb=first["model"]["size_bytes"] / 1e6,
                  sparse_mb=(first["model"].get("sparse_size_bytes") or 0) / 1e6 or None)
        if any("setting" in r for r in recs):
            settings = [format_setting(r.get("setting", {})) for r in recs]
            row.setting = settings[0] if len(set(settings)) == 1 else "; ".join(
                f"seed {r['seed']}: {text}" for r, text in zip(recs, settings))
            row.grid = [{"seed": r["seed"], "grid": r.get("grid", [])} for r in recs]
        if m:
            row.p50_ms = mean([r["measure"]["latency_ms"]["p50"] for r in recs])
            row.p90_ms = mean([r["measure"]["latency_ms"]["p90"] for r in recs])
            row.throughput = mean([r["measure"]["throughput"]["examples_per_s"] for r in recs])
            row.peak_rss_mb = max(r["measure"]["memory_mb"]["peak_rss"] for r in recs)
            paired = [r["measure"].get("paired") for r in recs]
            if all(paired):
                row.paired_speedup = mean([p["speedup"] for p in paired])
            elif label == "teacher":
                row.paired_speedup = 1.0
        tables[task].rows.append(row)
    for table in tables.values():
        table.rows.sort(key=lambda row: row.label != "teacher")  # stable: suite order kept
        teacher = next((r for r in table.rows if r.label == "teacher"), None)
        for row in table.rows:
            if teacher and mean(teacher.score) > 0:  # a ratio to a score <= 0 means nothing
                row.retained = 100 * mean(row.score) / mean(teacher.score)
            if row.paired_speedup is not None:
                row.speedup = row.paired_speedup
            elif teacher and teacher.p50_ms and row.p50_ms:  # records without a paired run
                row.speedup = teacher.p50_ms / row.p50_ms
    env = records[0].get("env", {})
    return RunSummary(run_dir, records[0]["suite"], records[0].get("suite_sha256", ""), env,
                      list(tables.values()), records)


# --------------------------------------------------------------------------- formatting

def format_setting(setting: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def grid_lines(table: TaskTable) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per method with a grid: (title, header, rows of setting and validation score per
    seed)."""
    out = []
    for row in table.rows:
        if not row.grid:
            continue
        seeds = [g["seed"] for g in row.grid]
        settings = [format_setting(g["setting"]) for g in row.grid[0]["grid"]]
        body = []
        for i, text in enumerate(settings):
            cells = []
            for per_seed in row.grid:
                g = per_seed["grid"][i]
                cells.append(f"{g['val_score']:.4f}{' ✓' if g.get('chosen') else ''}")
            body.append([text] + cells)
        out.append((f"{row.label}: grid on validation ({table.main_metric}; ✓ chosen)",
                    ["setting"] + [f"seed {seed}" for seed in seeds], body))
    return out


def fmt_values(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def fmt(value, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table_cells(table: TaskTable) -> tuple[list[str], list[list[str]]]:
    grid = any(r.setting is not None for r in table.rows)
    sparse = any(r.sparse_mb is not None for r in table.rows)
    head = (["method", "steps"] + (["chosen setting"] if grid else []) + ["seeds"] +
            table.metric_names +
            ["retained %", "params", "non-zero", "size MB"] + (["sparse MB"] if sparse else []) +
            ["p50 ms", "p90 ms", "speed-up", "ex/s (batch)", "peak RSS MB"])
    body = []
    for r in table.rows:
        body.append([r.label, r.steps] + ([r.setting or ""] if grid else []) +
                    [str(len(r.seeds))] +
                    [fmt_values(r.metrics.get(k, [])) for k in table.metric_names] +
                    [fmt(r.retained, ".1f"), fmt(r.parameters, ",d"), fmt(r.nonzero, ",d"),
                     fmt(r.size_mb, ".1f")] + ([fmt(r.sparse_mb, ".1f")] if sparse else []) +
                    [fmt(r.p50_ms, ".2f"), fmt(r.p90_ms, ".2f"),
                     fmt(r.speedup, ".2f", "×"), fmt(r.throughput, ".1f"),
                     fmt(r.peak_rss_mb, ".0f")])
    return head, body


SPARSE_NOTE = ("sparse MB: rows with unstructured sparsity also stored as a bitmask plus the "
               "non-zero values (`sparse.safetensors`). Their latency is measured on the dense "
               "model with dense kernels, which skip no zeros: unstructured sparsity shrinks "
               "storage, not latency.")


def table_notes(table: TaskTable) -> list[str]:
    return [SPARSE_NOTE] if any(r.sparse_mb is not None for r in table.rows) else []


PAIRED_NOTE = ("; speed-up = teacher p50 / model p50 with the two timed alternately on the "
               "same examples in one process (paired), so drift between jobs cancels out; "
               "the p50/p90 columns are each model's own run")


def protocol_lines(summary: RunSummary) -> list[str]:
    env = summary.env
    paired = any(r.paired_speedup is not None and r.label != "teacher"
                 for t in summary.tables for r in t.rows)
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    return [f"suite: {summary.suite} (sha256 {summary.suite_sha256[:12]})",
            f"CPU: {env.get('cpu', '?')}, {env.get('cores', '?')} cores; latency measured "
            f"with {env.get('measure_threads', '?')} thread(s), batch 1, real lengths, "
            f"tokenization not timed" + (PAIRED_NOTE if paired else ""),
            f"versions: {versions}"]


class MarkdownReporter:
    name = "md"
    filename = "report.md"

    def render(self, summary: RunSummary) -> str:
        out = [f"# compressbench report: {summary.suite}", ""]
        for table in summary.tables:
            out += [f"## {table.task}", "",
                    (f"Main metric: `{table.main_metric}`; retained % and speed-up are relative "
                    f"to the fine-tuned teacher."), ""]
            head, body = table_cells(table)
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
            out += ["| " + " | ".join(row) + " |" for row in body]
            out += [f"\n{note}" for note in table_notes(table)]
            for job_id, error in table.failed:
                out.append(f"\n**failed** `{job_id}`: {error}")
            out.append("")
            if summary.show_grid:
                for title, header, rows in grid_lines(table):
                    out += [f"### {title}", "", "| " + " | ".join(header) + " |",
                            "|---|" + "---:|" * (len(header) - 1)]
                    out += ["| " + " | ".join(cells) + " |" for cells in rows] + [""]
        out += ["## Environment", ""] + [f"- {line}" for line in protocol_lines(summary)]
        return "\n".join(out) + "\n"


class HtmlReporter:
    name = "html"
    filename = "report.html"

    def render(self, summary: RunSummary) -> str:
        e = html.escape
        parts = [(f"<!doctype html><html><head><meta charset='utf-8'>"
                 f"<title>compressbench: {e(summary.suite)}</title><style>{CSS}</style>"
                 f"</head><body><h1>compressbench report: {e(summary.suite)}</h1>")]
        for table in summary.tables:
            head, body = table_cells(table)
            parts.append(f"<h2>{e(table.task)}</h2><p>Main metric: <code>"
                         f"{e(table.main_metric)}</code>; retained % and speed-up are relative "
                         f"to the fine-tuned teacher.</p><table><thead><tr>")
            parts += [f"<th>{e(h)}</th>" for h in head]
            parts.append("</tr></thead><tbody>")
            for row in body:
                parts.append("<tr>" + "".join(
                    f"<td{' class=num' if i >= 2 else ''}>{e(c)}</td>"
                    for i, c in enumerate(row)) + "</tr>")
            parts.append("</tbody></table>")
            parts += [f"<p class=note>{e(note)}</p>" for note in table_notes(table)]
            for job_id, error in table.failed:
                parts.append(f"<p class=failed><b>failed</b> <code>{e(job_id)}</code>: "
                             f"{e(error)}</p>")
            if summary.show_grid:
                for title, header, rows in grid_lines(table):
                    parts.append(f"<h3>{e(title)}</h3><table><thead><tr>" + "".join(
                        f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
                    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"
                              for cells in rows]
                    parts.append("</tbody></table>")
        parts.append("<h2>Environment</h2><ul>")
        parts += [f"<li>{e(line)}</li>" for line in protocol_lines(summary)]
        parts.append("</ul></body></html>")
        return "\n".join(parts)


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;white-space:nowrap}
th{background:#f4f4f4}td.num{text-align:right}.failed{color:#a00}code{font-size:90%}"""


def write_reports(run_dir: Path, formats: list[str], pm, grid: bool = False) -> list[Path]:
    summary = summarise(run_dir)
    summary.show_grid = grid
    paths = []
    for name in formats:
        reporter = pm.reporters.get(name, "--format")
        path = Path(run_dir) / reporter.filename
        path.write_text(reporter.render(summary), encoding="utf-8")
        paths.append(path)
    (Path(run_dir) / "summary.json").write_text(json.dumps(
        [{"task": t.task, "rows": [r.__dict__ for r in t.rows]} for t in summary.tables],
        indent=2, default=str))
    return paths


@hookimpl
def register_reporters(register):
    register(MarkdownReporter())
    register(HtmlReporter())
