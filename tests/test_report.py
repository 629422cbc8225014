"""Reports rendered from a saved run (tests/data/report-run: sst2, stsb and CoNLL-2003, two
seeds, a chain), compared with a stored copy and checked number by number.

The saved run is a real one, made with (about 7 minutes on 2 cores):
    compressbench run tests/data/report-run/suite.yaml --output /tmp/report-run --no-report
and its results.jsonl, suite.yaml and predictions/ copied here. Its references/ (the texts and
gold labels of the reported splits) are GLUE and CoNLL-2003 data, which are never committed:
they are rebuilt once per test session from the shared data directory and checked against the
digests in ``references.sha256``; without the data, the tests that need them skip.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from compressbench.cli import main
from compressbench.errors import CompressBenchError
from compressbench.report import fmt_values, summarise
from compressbench.report.summary import pareto

SAVED = Path(__file__).parent / "data" / "report-run"


_REFERENCES: list[Path] = []  # the rebuilt references/, once per session


def saved_references() -> Path:
    """The saved run's references/, rebuilt from the shared data (exactly: the digests in
    ``references.sha256`` are checked); the calling test skips without the data."""
    import atexit
    import hashlib
    import os
    import tempfile

    from compressbench.plugins import get_plugin_manager
    from compressbench.runner import rebuild_references

    if _REFERENCES:
        return _REFERENCES[0]
    data = Path(os.environ.get("COMPRESSBENCH_DATA_DIR",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (data / "glue" / "SST-2").is_dir() or not (data / "conll2003").is_dir():
        pytest.skip(f"the saved run's references are rebuilt from GLUE and CoNLL-2003 data, "
                    f"not found in {data} (set COMPRESSBENCH_DATA_DIR)")
    run = Path(tempfile.mkdtemp(prefix="report-run-"))
    atexit.register(shutil.rmtree, run, True)
    for name in ("results.jsonl", "suite.yaml"):
        shutil.copy(SAVED / name, run / name)
    rebuild_references(run, get_plugin_manager(), data)
    for line in (SAVED / "references.sha256").read_text().splitlines():
        digest, name = line.split()
        got = hashlib.sha256((run / "references" / name).read_bytes()).hexdigest()
        assert got == digest, f"references/{name} rebuilt from {data} differs from the run's"
    _REFERENCES.append(run / "references")
    return _REFERENCES[0]


def copy_saved_run(dest: Path) -> Path:
    for name in ("results.jsonl", "suite.yaml"):
        shutil.copy(SAVED / name, dest / name)
    shutil.copytree(SAVED / "predictions", dest / "predictions")
    shutil.copytree(saved_references(), dest / "references")
    return dest


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    return copy_saved_run(tmp_path)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_markdown_matches_stored_copy(run_dir):
    assert main(["report", str(run_dir), "--format", "md", "--latency-budget", "8"]) == 0
    rendered = (run_dir / "report.md").read_text()
    if rendered != (SAVED / "report.md").read_text():
        (SAVED / "report.md.new").write_text(rendered)  # review, then rename to update
        pytest.fail(f"report.md differs from {SAVED / 'report.md'}; see report.md.new")


def test_every_format_and_the_plots_are_written(run_dir, capsys):
    assert main(["report", str(run_dir), "--format", "md,html,csv,json"]) == 0
    printed = capsys.readouterr().out.split()
    for task in ("sst2", "stsb", "conll2003"):
        for axis in ("latency", "size"):
            for ext in ("png", "svg"):
                path = run_dir / "plots" / f"{task}-{axis}.{ext}"
                assert path.stat().st_size > 5000 and str(path) in printed
    assert (run_dir / "plots/sst2-latency.png").read_bytes()[:4] == b"\x89PNG"
    md = (run_dir / "report.md").read_text()
    assert "![sst2: accuracy vs latency](plots/sst2-latency.png)" in md


def test_html_is_self_contained(run_dir):
    import re

    assert main(["report", str(run_dir), "--format", "html"]) == 0
    page = (run_dir / "report.html").read_text()
    assert page.count("<figure class=plot") == 6 and page.count("<svg") == 6
    # nothing that makes a browser fetch: no src=, no <link>, no @import, no url() but #ids
    assert not re.search(r"\bsrc\s*=|<link|@import", page)
    assert set(re.findall(r"url\((.)", page)) <= {"#"}
    assert set(re.findall(r"href=['\"]?(.)", page)) <= {"#"}
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the inlined SVGs share no id


def test_seeds_are_aggregated_as_mean_and_std(run_dir):
    s = summarise(run_dir)
    sst2 = next(t for t in s.tables if t.task == "sst2")
    kd = sst2.row("kd-2L")
    raw = [r for r in records(run_dir) if r["task"] == "sst2" and r["label"] == "kd-2L"]
    assert kd.seeds == [1, 2] and kd.score == [r["score"] for r in sorted(
        raw, key=lambda r: r["seed"])]
    assert kd.p50_ms == pytest.approx(sum(r["measure"]["latency_ms"]["p50"] for r in raw) / 2)
    assert kd.speedup == pytest.approx(sum(r["measure"]["paired"]["speedup"] for r in raw) / 2)
    teacher = sst2.teacher
    assert kd.retained == pytest.approx(100 * kd.mean_score / teacher.mean_score)
    assert kd.compression == pytest.approx(teacher.size_mb / kd.size_mb)
    assert fmt_values([0.5]) == "0.5000"
    assert fmt_values([0.5, 0.7]) == "0.6000 ± 0.1414"
    assert sst2.metric_names[0] == "accuracy"  # the main metric leads


def test_glue_macro_uses_each_tasks_official_metrics(run_dir):
    s = summarise(run_dir)
    assert s.overview.glue_tasks == ["sst2", "stsb"]  # conll2003 is not GLUE
    row = next(r for r in s.overview.rows if r.label == "kd-2L")
    by_seed = {}
    for r in records(run_dir):
        if r["label"] == "kd-2L" and r["task"] in ("sst2", "stsb"):
            m = r["metrics"]
            task_score = m["accuracy"] if r["task"] == "sst2" else (m["pearson"] +
                                                                     m["spearman"]) / 2
            by_seed.setdefault(r["task"], []).append(task_score)
    expected = 100 * sum(sum(v) / len(v) for v in by_seed.values()) / 2
    assert row.glue == pytest.approx(expected)


def test_pareto_front():
    # (cost, score): b dominates c (cheaper and better); a and d are trade-offs; e ties b
    pts = [(1.0, 0.5), (2.0, 0.8), (3.0, 0.7), (4.0, 0.9), (2.0, 0.8)]
    assert pareto(pts) == [True, True, False, True, True]


def test_what_to_pick(run_dir):
    """The picks follow the interval rule (see test_uncertainty.py); sst2's teacher here is
    not distinguishable from the majority class (128 dev examples), so nothing is picked."""
    s = summarise(run_dir, latency_budget=1e-3)
    for tp in s.picks:
        table = next(t for t in s.tables if t.task == tp.task)
        if tp.task == "sst2":
            assert [p.row for p in tp.picks] == [None]
            assert "majority-class baseline" in tp.picks[0].why
            continue
        close = [r for r in table.rows if r is table.teacher or
                 (r.vs_teacher.ci[0] >= -0.01 and not r.flags)]
        fastest, smallest, budget = tp.picks
        assert fastest.row is max(close, key=lambda r: r.speedup)
        assert smallest.row.size_mb == min(r.size_mb for r in close)
        assert budget.row is None and "no model's p50 is at most 0.001 ms" in budget.why
    s = summarise(run_dir, latency_budget=1e6)
    for tp in s.picks:
        if tp.task == "sst2":
            continue
        table = next(t for t in s.tables if t.task == tp.task)
        assert tp.picks[2].row.mean_score == max(r.mean_score for r in table.rows)


def test_latency_budget_must_be_positive(run_dir, capsys):
    assert main(["report", str(run_dir), "--latency-budget", "0"]) == 2
    assert "--latency-budget 0: give a positive number" in capsys.readouterr().err


def test_error_analysis(run_dir):
    from compressbench.report.analysis import analyse

    s = summarise(run_dir)
    errors = {e.task: e for e in analyse(s, examples=2)}
    sst2 = errors["sst2"]
    refs = json.loads((run_dir / "references/sst2.json").read_text())
    gold = refs["splits"]["dev"]["label"]
    pred_dir = run_dir / "predictions"
    teacher = json.loads((pred_dir / "sst2__teacher__seed1.json").read_text())["dev"]
    kd = json.loads((pred_dir / "sst2__kd-2L__seed1.json").read_text())["dev"]
    m = next(x for x in sst2.methods if x.label == "kd-2L")
    assert m.seed == 1 and sum(map(sum, m.confusion)) == len(gold) == sst2.n
    assert m.confusion[1][0] == sum(1 for g, p in zip(gold, kd) if g == 1 and p == 0)
    assert m.flips == sum(1 for g, t, p in zip(gold, teacher, kd) if t == g and p != g)
    assert m.rescues == sum(1 for g, t, p in zip(gold, teacher, kd) if t != g and p == g)
    assert len(m.examples) == min(2, m.flips)
    for x in m.examples:
        assert x["teacher"] == x["gold"] != x["method"]
    pos = next(c for c in m.per_class if c.name == "positive")
    tp = sum(1 for g, p in zip(gold, kd) if g == p == 1)
    assert pos.precision == pytest.approx(tp / max(1, sum(p == 1 for p in kd)))
    conll = errors["conll2003"]
    assert {c.name for c in conll.methods[0].per_class} <= {"PER", "LOC", "ORG", "MISC"}
    assert conll.classes[-1] == "O" and len(conll.methods[0].confusion) == len(conll.classes)
    stsb = errors["stsb"]
    assert stsb.methods[0].confusion is None and sum(b.n for b in stsb.methods[0].bands) == \
        stsb.n


def test_stale_predictions_are_not_analysed(run_dir):
    from compressbench.report.analysis import analyse

    path = run_dir / "predictions" / "sst2__kd-2L__seed1.json"
    preds = json.loads(path.read_text())
    preds["dev"] = [1 - p for p in preds["dev"]]
    path.write_text(json.dumps(preds))
    sst2 = next(e for e in analyse(summarise(run_dir)) if e.task == "sst2")
    assert "kd-2L" not in [m.label for m in sst2.methods]
    assert "kd-2L (predictions do not reproduce the recorded metric)" in sst2.note


def test_csv_and_json(run_dir):
    assert main(["report", str(run_dir), "--format", "csv,json"]) == 0
    rows = list(csv.DictReader((run_dir / "report.csv").open()))
    s = summarise(run_dir)
    assert [(r["task"], r["method"]) for r in rows] == [
        (t.task, r.label) for t in s.tables for r in t.rows]
    kd = next(r for r in rows if r["task"] == "sst2" and r["method"] == "kd-2L")
    assert float(kd["score"]) == pytest.approx(s.tables[0].row("kd-2L").mean_score)
    assert kd["n_seeds"] == "2" and kd["seeds"] == "1 2" and kd["accuracy_std"] != ""
    body = json.loads((run_dir / "report.json").read_text())
    assert [t["task"] for t in body["tables"]] == ["sst2", "stsb", "conll2003"]
    assert body["errors"][0]["methods"][0]["label"] == "teacher"


def test_failed_jobs_are_listed(run_dir):
    with open(run_dir / "results.jsonl", "a") as f:
        f.write(json.dumps({"job_id": "sst2/bad/seed42", "key": "x", "status": "failed",
                            "task": "sst2", "label": "bad", "suite": "smoke",
                            "main_metric": "accuracy", "error": "ValueError: nope"}) + "\n")
    assert main(["report", str(run_dir), "--format", "md,html"]) == 0
    assert "**failed** `sst2/bad/seed42`: ValueError: nope" in (run_dir / "report.md").read_text()


def test_partial_run_without_references(run_dir, monkeypatch):
    monkeypatch.delenv("COMPRESSBENCH_DATA_DIR", raising=False)
    shutil.rmtree(run_dir / "references")
    lines = (run_dir / "results.jsonl").read_text().splitlines()[:3]  # an interrupted run
    (run_dir / "results.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["report", str(run_dir), "--format", "md,html"]) == 0
    md = (run_dir / "report.md").read_text()
    assert "Not available: no references/sst2.json" in md


def test_empty_run_dir_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(CompressBenchError, match="no results yet"):
        summarise(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "no results yet" in capsys.readouterr().err


def test_unknown_format(run_dir, capsys):
    assert main(["report", str(run_dir), "--format", "pdf"]) == 2
    assert "unknown reporter 'pdf'" in capsys.readouterr().err


def test_a_reporter_plugin(run_dir, tmp_path, capsys):
    plugin = tmp_path / "tsv_reporter.py"
    plugin.write_text(
        "import compressbench\n"
        "class Tsv:\n"
        "    name, filename = 'tsv', 'report.tsv'\n"
        "    def render(self, summary):\n"
        "        return ''.join(f'{t.task}\\t{r.label}\\t{r.mean_score}\\n'\n"
        "                       for t in summary.tables for r in t.rows)\n"
        "@compressbench.hookimpl\n"
        "def register_reporters(register):\n"
        "    register(Tsv())\n")
    assert main(["report", str(run_dir), "--format", "tsv", "--plugin", str(plugin)]) == 0
    lines = (run_dir / "report.tsv").read_text().splitlines()
    assert lines[0].startswith("sst2\tteacher\t") and len(lines) == 12


def test_references_are_rebuilt_from_the_data_dir(run_dir, capsys):
    """An older run without references/ gets them back from its suite.yaml and the data, and
    only if the data is what the run used."""
    import os

    data = Path(os.environ.get("COMPRESSBENCH_DATA_DIR", "../shared/data"))
    if not (data / "glue" / "SST-2").is_dir():
        pytest.skip(f"no GLUE data in {data} (set COMPRESSBENCH_DATA_DIR)")
    shutil.rmtree(run_dir / "references")
    assert main(["report", str(run_dir), "--format", "md", "--data-dir", str(data)]) == 0
    for task in ("sst2", "stsb", "conll2003"):
        rebuilt = json.loads((run_dir / "references" / f"{task}.json").read_text())
        assert rebuilt == json.loads((saved_references() / f"{task}.json").read_text())
    # data that differs from the run's is refused, naming the fingerprints
    shutil.rmtree(run_dir / "references")
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    changed = [json.loads(line) for line in lines]
    for r in changed:
        r["data"]["fingerprint"] = "0" * 16
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    assert main(["report", str(run_dir), "--format", "md", "--data-dir", str(data)]) == 0
    assert "the sst2 data differs from the data the run used" in capsys.readouterr().err
    assert not (run_dir / "references" / "sst2.json").exists()


def test_glue_task_score_is_the_glue_papers_definition():
    from compressbench.report.summary import glue_task_score

    # CoLA: MCC alone (its accuracy is reported, but GLUE does not score it)
    assert glue_task_score("cola", {"mcc": 0.20, "accuracy": 0.70}) == pytest.approx(0.20)
    assert glue_task_score("sst2", {"accuracy": 0.9, "macro_f1": 0.1}) == pytest.approx(0.9)
    assert glue_task_score("mrpc", {"accuracy": 0.80, "f1": 0.86}) == pytest.approx(0.83)
    assert glue_task_score("qqp", {"accuracy": 0.90, "f1": 0.80}) == pytest.approx(0.85)
    assert glue_task_score("stsb", {"pearson": 0.88, "spearman": 0.86}) == pytest.approx(0.87)
    assert glue_task_score("mnli", {"accuracy_dev_matched": 0.84,
                                    "accuracy_dev_mismatched": 0.82}) == pytest.approx(0.83)
    for task in ("qnli", "rte", "wnli"):
        assert glue_task_score(task, {"accuracy": 0.6}) == pytest.approx(0.6)
    assert glue_task_score("mrpc", {"accuracy": 0.8}) is None  # a missing metric: no score


def test_every_suite_version_is_named_when_a_run_was_resumed_with_an_edited_suite(run_dir):
    lines = records(run_dir)
    for r in lines[:3]:
        r["suite_sha256"] = "0" * 64
    (run_dir / "results.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    s = summarise(run_dir)
    assert dict(s.suite_versions)["0" * 64] == 3 and len(s.suite_versions) == 2
    assert main(["report", str(run_dir), "--format", "md,json"]) == 0
    md = (run_dir / "report.md").read_text()
    assert "versions of the suite" in md and "`000000000000` (3 jobs)" in md
    assert len(json.loads((run_dir / "report.json").read_text())["suite_versions"]) == 2
