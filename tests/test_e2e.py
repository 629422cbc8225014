"""End to end: suites/smoke.yaml through the real CLI, on the embedded teacher and real data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA


@pytest.mark.e2e
@pytest.mark.skipif(not (SHARED_DATA / "glue" / "SST-2").is_dir(),
                    reason=f"needs GLUE data in {SHARED_DATA} (set COMPRESSBENCH_DATA_DIR)")
def test_smoke_suite_via_cli(tmp_path):
    env = {**os.environ, "COMPRESSBENCH_DATA_DIR": str(SHARED_DATA), "HF_HUB_OFFLINE": "1",
           "COMPRESSBENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "compressbench.cli", "run", str(REPO / "suites/smoke.yaml"),
           "--output", str(tmp_path / "run")]
    # no wall-clock guess: the timeout is only a net for a hang (a loaded machine is slow)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run/results.jsonl").open()]
    assert [r["job_id"] for r in records] == [
        "sst2/teacher/seed42", "sst2/finetune-2L/seed42", "sst2/kd-2L/seed42",
        "stsb/teacher/seed42", "stsb/finetune-2L/seed42", "stsb/kd-2L/seed42"]
    for r in records:
        assert r["status"] == "ok"
        assert r["measure"]["backends"]["torch"]["latency_ms"]["p50"] > 0
        assert r["data"]["eval_dev"] == 128
    teacher, student = records[0], records[1]
    assert teacher["model"]["parameters"] == 22_713_986  # all-MiniLM-L6-v2 + a 2-class head
    assert student["model"]["parameters"] < teacher["model"]["parameters"]
    html = (tmp_path / "run/report.html").read_text()
    assert "finetune-2L" in html and "kd-2L" in html and "<table class='sortable'>" in html
    # the run saved what the error analysis and the plots need
    assert (tmp_path / "run/references/sst2.json").is_file()
    assert "Error analysis" in html and html.count("<figure class=plot") == 4
    assert (tmp_path / "run/plots/stsb-latency.png").is_file()
    # a second run does no work at all
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0
    assert "started" not in proc.stderr
    assert len((tmp_path / "run/results.jsonl").read_text().splitlines()) == 6
