"""Machine-readable reports: ``report.csv`` (one row per task and method, raw numbers) and
``report.json`` (everything the other reports show, as data)."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from compressbench.report.summary import RunSummary, std

ROW_FIELDS = ("retained", "parameters", "nonzero", "size_mb", "sparse_mb", "compression",
              "p50_ms", "p90_ms", "speedup", "paired", "throughput", "peak_rss_mb",
              "pareto_latency", "pareto_size")
BACKEND_FIELDS = ("status", "reason", "p50_ms", "p90_ms", "cpu_p50_ms", "speedup", "vs_eager",
                  "cpu_vs_eager", "throughput", "peak_rss_mb", "max_logit_diff", "agreement")


class CsvReporter:
    name = "csv"
    filename = "report.csv"
    uses_plots = False
    description = "report.csv: one row per task and method, raw numbers (mean and std per metric)"

    def render(self, summary: RunSummary) -> str:
        metric_names: list[str] = []
        for t in summary.tables:
            metric_names += [m for m in t.metric_names if m not in metric_names]
        head = (["task", "method", "steps", "setting", "n_seeds", "seeds", "main_metric",
                 "score", "score_std"] +
                [f"{m}{suffix}" for m in metric_names for suffix in ("", "_std")] +
                list(ROW_FIELDS) + ["home_backend"] + UNCERTAINTY_HEAD)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(head)
        for t in summary.tables:
            for r in t.rows:
                metric_cells = []
                for m in metric_names:
                    values = r.metrics.get(m, [])
                    metric_cells += [sum(values) / len(values) if values else "",
                                     blank(std(values)) if values else ""]
                writer.writerow([t.task, r.label, r.steps, r.setting or "", len(r.seeds),
                                 " ".join(map(str, r.seeds)), t.main_metric, r.mean_score,
                                 blank(r.score_std)] + metric_cells +
                                [blank(getattr(r, f)) for f in ROW_FIELDS] +
                                [r.home or ""] + uncertainty_cells(r, t.within))
        return buf.getvalue()


COMPARISON_HEAD = ["diff", "ci_low", "ci_high", "p", "level", "distinguishable", "verdict",
                   "detectable"]
UNCERTAINTY_HEAD = (["score_ci_low", "score_ci_high", "seed_ci_low", "seed_ci_high"] +
                    [f"vs_teacher_{h}" for h in COMPARISON_HEAD] + ["baseline"] +
                    [f"vs_baseline_{h}" for h in COMPARISON_HEAD] + ["flags"])


def uncertainty_cells(r, within: float) -> list:
    """The row's intervals, comparisons and flags (empty where the run kept no predictions);
    ``verdict`` in the words of the markdown and HTML (``within 1 point``, ``worse``, ...)."""
    from compressbench.report.tables import verdict

    def pair(ci):
        return [blank(ci[0]), blank(ci[1])] if ci else ["", ""]

    def comparison(c, name: bool, margin: float | None):
        if c is None:
            return [""] * (len(COMPARISON_HEAD) + name)
        return ([c.other] if name else []) + [c.diff, *pair(c.ci), c.p, c.level,
                                               c.distinguishable, verdict(c, margin),
                                               blank(c.detectable)]
    return (pair(r.ci) + pair(r.seed_ci) + comparison(r.vs_teacher, False, within) +
            comparison(r.vs_baseline, True, None) + [" ".join(r.flags)])


class BackendCsvReporter:
    name = "backends-csv"
    filename = "report-backends.csv"
    uses_plots = False
    description = ("report-backends.csv: one row per task, method and backend (latency, paired "
                   "speed-ups, agreement with PyTorch, or why it was not measured)")

    def render(self, summary: RunSummary) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["task", "method", "main_metric", "score", "backend"] +
                        list(BACKEND_FIELDS))
        for t in summary.tables:
            for r in t.rows:
                for b in r.backends.values():
                    writer.writerow([t.task, r.label, t.main_metric, r.mean_score, b.backend] +
                                    [blank(getattr(b, f)) for f in BACKEND_FIELDS])
        return buf.getvalue()


def blank(value):
    return "" if value is None else value


def with_verdicts(table, within: float) -> dict:
    """The table as data, each comparison with its ``verdict`` in the report's words."""
    from compressbench.report.tables import verdict

    out = asdict(table)
    for row, data in zip(table.rows, out["rows"]):
        for key, margin in (("vs_teacher", within), ("vs_baseline", None)):
            c = getattr(row, key)
            if c is not None:
                data[key]["verdict"] = verdict(c, margin)
    return out


#: report.json's layout version (compressbench/schemas/report.schema.json)
REPORT_SCHEMA = 1


class JsonReporter:
    name = "json"
    filename = "report.json"
    uses_plots = False
    description = "report.json: tables, overview, picks, error analysis and environment as data"

    def render(self, summary: RunSummary) -> str:
        body = {
            "schema_version": REPORT_SCHEMA,  # compressbench/schemas/report.schema.json
            "suite": summary.suite, "suite_sha256": summary.suite_sha256,
            "suite_versions": [{"sha256": sha, "jobs": n} for sha, n in summary.suite_versions],
            "environment": summary.env, "environments": len(summary.envs),
            "latency_budget_ms": summary.latency_budget, "within_points": summary.within,
            "tables": [with_verdicts(t, summary.within) for t in summary.tables],
            "overview": asdict(summary.overview) if summary.overview else None,
            "picks": [{"task": p.task, "main_metric": p.main_metric,
                       "teacher_score": p.teacher_score,
                       "picks": [{"question": k.question,
                                  "method": k.row.label if k.row else None, "why": k.why,
                                  "backend": k.backend}
                                 for k in p.picks]} for p in summary.picks],
            "errors": [asdict(x) for x in summary.errors],
            "plots": [{"task": p.task, "axis": p.axis, "files": p.files, "front": p.front}
                      for p in summary.plots],
        }
        return json.dumps(body, indent=1, default=str) + "\n"
