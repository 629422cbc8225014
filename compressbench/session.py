"""The Python API: run a suite and read a run as data, without a plugin manager.

    import compressbench
    results = compressbench.run("suites/glue.yaml", data_dir="../shared/data",
                                output="runs/glue", overrides={"seeds": [42]})
    df = results.to_dataframe()          # one row per task, model and backend
    results.best(latency_budget=5)       # the report's "what to pick", as data
    results.report(["md", "html"])       # the report files; returns their paths
    compressbench.load("runs/glue")      # the same Results for a finished (or partial) run

``compressbench run`` calls :func:`run` and ``compressbench report`` :meth:`Results.report`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


def override_list(overrides: dict | Iterable[str] | None) -> list[str]:
    """``{"training.epochs": 1}`` or ``["training.epochs=1"]`` -> ``["training.epochs=1"]``
    (a dict's values written as JSON, which YAML reads back as the same value)."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return [str(o) for o in overrides]


def plugin_manager(plugin_files=(), blocked=()):
    from compressbench.plugins import get_plugin_manager

    return get_plugin_manager(list(plugin_files), list(blocked))


@dataclass
class Results:
    """A run directory as data. ``within``: the margin, in points, of "as good as the
    teacher" (the report's ``--within``)."""

    run_dir: Path
    plugin_files: tuple = ()
    blocked: tuple = ()
    within: float = 1.0
    _pm: Any = field(default=None, repr=False, compare=False)

    @property
    def pm(self):
        if self._pm is None:
            self._pm = plugin_manager(self.plugin_files, self.blocked)
        return self._pm

    def records(self) -> list:
        """The latest record of every job (:class:`compressbench.record.Record`)."""
        from compressbench import results
        from compressbench.record import Record

        return [Record.from_dict(r) for r in results.latest(results.read(self.run_dir)).values()]

    def summary(self, latency_budget: float | None = None):
        from compressbench.report import summarise

        return summarise(self.run_dir, latency_budget, self.within)

    def to_dataframe(self):
        """One tidy row per task, model and backend: the columns of ``report.csv`` (scores,
        intervals, verdicts, size) joined with those of ``report-backends.csv`` (latency,
        speed-ups, agreement, or why it was not measured); a model measured nowhere has one
        row with an empty backend."""
        import io

        import pandas as pd

        from compressbench.report.tabular import BackendCsvReporter, CsvReporter

        summary = self.summary()
        models = pd.read_csv(io.StringIO(CsvReporter().render(summary)), keep_default_na=False,
                             na_values=[""])
        backends = pd.read_csv(io.StringIO(BackendCsvReporter().render(summary)),
                               keep_default_na=False, na_values=[""])
        backends = backends.drop(columns=["main_metric", "score"])
        # a measurement report.csv gives for the model's home backend (p50_ms, speedup ...)
        # comes from each backend's own row here
        both = [c for c in backends.columns if c in models.columns and c not in ("task", "method")]
        return models.drop(columns=both).merge(backends, on=["task", "method"], how="left")

    def best(self, latency_budget: float | None = None) -> list[dict]:
        """The report's "what to pick" per task as data: one dict per question (the fastest
        and the smallest model within ``within`` points of the teacher, the best under a
        latency budget ...), with the model's label, backend, score and the reason."""
        out = []
        for picks in self.summary(latency_budget).picks:
            for p in picks.picks:
                row = p.row
                measured = p.measured
                out.append({"task": picks.task, "question": p.question,
                            "method": row.label if row else None,
                            "backend": (p.backend or row.home) if row else None,
                            "score": row.mean_score if row else None,
                            "p50_ms": measured.p50_ms if measured else None,
                            "why": p.why})
        return out

    def report(self, formats: Iterable[str] = ("md", "html"), latency_budget: float | None = None,
               examples: int = 3, grid: bool = False) -> list[Path]:
        """Render the report files into the run directory; returns their paths."""
        from compressbench.report import write_reports

        return write_reports(self.run_dir, list(formats), self.pm, grid=grid,
                             latency_budget=latency_budget, within=self.within,
                             examples=examples)


def load(run_dir: str | Path, plugin_files=(), blocked=(), within: float = 1.0) -> Results:
    """The :class:`Results` of a run directory (finished or partial)."""
    from compressbench.errors import CompressBenchError

    run_dir = Path(run_dir)
    if not (run_dir / "results.jsonl").is_file():
        raise CompressBenchError(f"{run_dir}: not a run directory (no results.jsonl)")
    return Results(run_dir, tuple(plugin_files), tuple(blocked), within)


def run(suite: str | Path | Any, data_dir: str | Path | None = None,
        output: str | Path | None = None, overrides: dict | Iterable[str] | None = None,
        cache_dir: str | Path | None = None, executor: str | None = None,
        workers: int | None = None, threads: int | None = None, address: str | None = None,
        plugin_files=(), blocked=(), register=(), within: float = 1.0,
        report: Iterable[str] | None = ("md", "html"), latency_budget: float | None = None,
        examples: int = 3, pm=None, track: Iterable[str] = ()) -> Results:
    """Run ``suite`` (a path, or a :class:`compressbench.suite.Suite`) with ``overrides``
    (``{"training.epochs": 1}`` or ``["training.epochs=1"]``), resuming what ``output``
    already holds, then write the report (``report=None``: none); returns the
    :class:`Results`. ``register``: objects with hook implementations (progress, tracking);
    ``pm``: a plugin manager to use instead of building one; ``track``: built-in trackers
    (``"tensorboard"``, ``"mlflow"``: :mod:`compressbench.tracking`)."""
    from compressbench.runner import run_suite
    from compressbench.suite import Suite, load_suite

    if isinstance(suite, Suite):
        if overrides:
            suite = load_suite(suite.path, override_list(overrides), suite.folder)
    else:
        suite = load_suite(Path(suite), override_list(overrides))
    if pm is None:
        pm = plugin_manager([*plugin_files, *suite.plugins], blocked)
    from compressbench.tracking import trackers
    for obj in [*register, *trackers([t.strip() for t in track])]:
        pm.register(obj)
    run_dir = Path(output) if output is not None else Path("runs") / suite.name
    run_suite(suite, pm, Path(data_dir) if data_dir is not None else None, run_dir,
              Path(cache_dir) if cache_dir is not None else None, executor, workers, threads,
              address, within)
    results = Results(run_dir, tuple(plugin_files), tuple(blocked), within, pm)
    if report:
        results.report(report, latency_budget, examples)
    return results
