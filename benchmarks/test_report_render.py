"""How long `compressbench report` takes on a saved run: every format, plots included.

Run: make bench   (or: pytest benchmarks/test_report_render.py --benchmark-only -s)
Target: re-rendering a run is interactive, under 10 s for the test fixture (3 tasks, 4 rows
each, 6 plots) on a 2-core CPU; the full glue run (4 tasks x 15 rows) is reported in the notes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from compressbench.plugins import get_plugin_manager
from compressbench.report import write_reports

SAVED = Path(__file__).resolve().parents[1] / "tests" / "data" / "report-run"


def test_report_render(benchmark, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(SAVED, run_dir)
    pm = get_plugin_manager()
    paths = benchmark.pedantic(write_reports, args=(run_dir, ["md", "html", "csv", "json"], pm),
                               kwargs={"latency_budget": 5.0}, rounds=3, iterations=1)
    assert (run_dir / "report.html").is_file() and len(paths) == 4 + 12
