"""Report rendering from a saved results file (a real smoke run), compared with stored copies."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compressbench.cli import main
from compressbench.errors import CompressBenchError
from compressbench.report import fmt_values, summarise

SAVED = Path(__file__).parent / "data" / "smoke-run"


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    shutil.copy(SAVED / "results.jsonl", tmp_path / "results.jsonl")
    return tmp_path


def test_markdown_matches_stored_copy(run_dir, capsys):
    assert main(["report", str(run_dir), "--format", "md"]) == 0
    rendered = (run_dir / "report.md").read_text()
    if rendered != (SAVED / "report.md").read_text():
        (SAVED / "report.md.new").write_text(rendered)  # review, then rename to update
        pytest.fail(f"report.md differs from {SAVED / 'report.md'}; see report.md.new")


def test_html_is_self_contained(run_dir):
    assert main(["report", str(run_dir), "--format", "html"]) == 0
    page = (run_dir / "report.html").read_text()
    assert page.count("<table>") == 2 and page.count("<tr>") == 2 + 4
    assert "http://" not in page and "https://" not in page and "<script src" not in page


def test_summary_numbers(run_dir):
    s = summarise(run_dir)
    sst2 = next(t for t in s.tables if t.task == "sst2")
    teacher, student = sst2.rows
    assert teacher.label == "teacher" and teacher.retained == pytest.approx(100)
    assert student.retained == pytest.approx(100 * student.score[0] / teacher.score[0])
    assert student.speedup == pytest.approx(teacher.p50_ms / student.p50_ms)


def test_failed_jobs_are_listed(run_dir):
    import json
    with open(run_dir / "results.jsonl", "a") as f:
        f.write(json.dumps({"job_id": "sst2/bad/seed42", "key": "x", "status": "failed",
                            "task": "sst2", "label": "bad", "suite": "smoke",
                            "main_metric": "accuracy", "error": "ValueError: nope"}) + "\n")
    assert main(["report", str(run_dir), "--format", "md"]) == 0
    assert "**failed** `sst2/bad/seed42`: ValueError: nope" in (run_dir / "report.md").read_text()


def test_seeds_render_mean_and_std():
    assert fmt_values([0.5]) == "0.5000"
    assert fmt_values([0.5, 0.7]) == "0.6000 ± 0.1414"


def test_empty_run_dir_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(CompressBenchError, match="no results yet"):
        summarise(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "no results yet" in capsys.readouterr().err


def test_unknown_format(run_dir, capsys):
    assert main(["report", str(run_dir), "--format", "pdf"]) == 2
    assert "unknown reporter 'pdf'" in capsys.readouterr().err
