"""Reports from a run directory.

``summarise`` turns the records into numbers (:mod:`.summary`); :mod:`.analysis` adds the error
analysis from the saved predictions, :mod:`.plots` the trade-off plots; reporters only format.
Reporters are plugins: this package registers ``md``, ``html``, ``csv`` and ``json`` through
``register_reporters``, exactly as a third-party plugin would register its own.

A reporter is any object with:

- ``name``: the value given to ``--format``;
- ``filename``: the file written in the run directory;
- ``render(summary) -> str``: the file's text, from a :class:`RunSummary`;
- optionally ``uses_plots = True``, to have ``summary.plots`` filled (PNG/SVG files are then
  written under ``RUN_DIR/plots/``), and ``description``, shown by ``compressbench plugins``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from compressbench import rundir, safefs
from compressbench.errors import CompressBenchError
from compressbench.hookspecs import hookimpl
from compressbench.report.html import HtmlReporter
from compressbench.report.markdown import MarkdownReporter
from compressbench.report.summary import RunSummary, TaskTable, summarise
from compressbench.report.tables import fmt_values
from compressbench.report.tabular import BackendCsvReporter, CsvReporter, JsonReporter

__all__ = ["Reporter", "RunSummary", "TaskTable", "fmt_values", "summarise", "write_reports"]

class Reporter(Protocol):
    name: str
    filename: str

    def render(self, summary: RunSummary) -> str: ...


def write_reports(run_dir: Path, formats: list[str], pm, grid: bool = False,
                  latency_budget: float | None = None, within: float = 1.0,
                  examples: int = 3) -> list[Path]:
    """Render each reporter in ``formats`` into ``run_dir``; returns the paths written.

    ``data_dir``: only for runs made before ``references/`` (the gold labels of the error
    analysis) were saved: the caller rebuilds them first with
    :func:`compressbench.runner.rebuild_references` (the report reads records and the run
    directory only; it never imports the runner or the data modules).
    """
    from compressbench.report.analysis import analyse
    from compressbench.report.plots import make_plots

    run_dir = Path(run_dir)
    reporters = [pm.reporters.get(name, "--format") for name in formats]
    if latency_budget is not None and latency_budget <= 0:
        raise CompressBenchError(f"--latency-budget {latency_budget:g}: give a positive number "
                                 f"of milliseconds (p50 at batch 1)")
    summary = summarise(run_dir, latency_budget, within)
    summary.show_grid, summary.examples = grid, examples
    summary.errors = analyse(summary, examples)
    paths = []
    if any(getattr(r, "uses_plots", False) for r in reporters):
        summary.plots = make_plots(summary, run_dir)
        paths += [run_dir / f for p in summary.plots for f in p.files]
    for reporter in reporters:
        path = rundir.inside(run_dir, Path(reporter.filename).name)
        safefs.write_atomic(path, reporter.render(summary))
        paths.append(path)
    return paths


@hookimpl
def register_reporters(register):
    for reporter in (MarkdownReporter(), HtmlReporter(), CsvReporter(), BackendCsvReporter(),
                     JsonReporter()):
        register(reporter)
