"""Results across runs: ``compressbench compare`` merges runs of the same tasks, data and
teacher into one report (a new method's run against a stored baseline run) and refuses runs
that scored different examples or used other data; ``compressbench index`` puts runs into a
SQLite file that SQL and ``compare --db`` query."""
from __future__ import annotations

import json
import sqlite3

import pytest

from compressbench.cli import main
from compressbench.compare import merge
from compressbench.errors import CompressBenchError
from tests.conftest import make_data_dir, write


def suite(teacher, methods: str, name: str = "tiny", train: int = 40) -> str:
    return (f"version: 1\nname: {name}\nteacher: {{model: '{teacher}', training: {{epochs: 1}}}}\n"
            f"tasks: [sst2]\nmethods:\n{methods}seeds: [1, 2]\n"
            f"training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,"
            f" max_train_samples: {train}, max_val_samples: 8}}\nmeasure: {{enabled: false}}\n")


@pytest.fixture(scope="module")
def runs(tiny_teacher, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    data = make_data_dir(tmp / "data")
    small = "  - {name: finetune, label: small, student: {layers: 1}}\n"
    texts = {"base": small + "  - {name: kd, student: {layers: 1}}\n",
             "new": small + "  - {name: kd, temperature: 4, student: {layers: 1}}\n",
             "other": small}
    for name, methods in texts.items():
        path = write(tmp / f"{name}.yaml", suite(tiny_teacher, methods,
                                                 train=30 if name == "other" else 40))
        assert main(["run", str(path), "--data-dir", str(data), "--output", str(tmp / name),
                     "--cache-dir", str(tmp / "cache"), "--no-report"]) == 0
    return tmp


def test_compare_reports_a_new_run_against_a_baseline_run(runs, capsys):
    out = runs / "merged"
    assert main(["compare", str(runs / "base"), str(runs / "new"), "-o", str(out),
                 "--format", "md,csv"]) == 0
    labels = {json.loads(line)["label"] for line in (out / "results.jsonl").read_text().splitlines()}
    # the same teacher and finetune models are kept once; new's kd (another temperature) is not
    # the base run's kd, so it gets its run's name
    assert labels == {"teacher", "small", "kd", "new.kd"}
    report = (out / "report.md").read_text()
    assert "| new.kd |" in report and "vs no-distillation" in report.lower()
    csv = (out / "report.csv").read_text()
    row = next(line for line in csv.splitlines() if line.startswith("sst2,new.kd,"))
    assert ",small," in row  # compared with its no-distillation student from the other run


def test_compare_refuses_runs_on_other_data_or_examples(runs, tmp_path):
    with pytest.raises(CompressBenchError, match="sst2 data differs"):
        merge([runs / "base", runs / "other"], tmp_path / "x")
    changed = tmp_path / "changed"
    import shutil
    shutil.copytree(runs / "base", changed, ignore=shutil.ignore_patterns("models"))
    refs = changed / "references" / "sst2.json"
    body = json.loads(refs.read_text())
    body["splits"]["dev"]["label"][0] = 1 - body["splits"]["dev"]["label"][0]
    refs.write_text(json.dumps(body))
    with pytest.raises(CompressBenchError, match="scored sst2 on different examples"):
        merge([runs / "base", changed], tmp_path / "y")
    with pytest.raises(CompressBenchError, match="two or more run directories"):
        merge([runs / "base"], tmp_path / "z")


def test_index_puts_runs_in_sqlite_and_compare_reads_it(runs, capsys):
    db = runs / "results.db"
    assert main(["index", *(str(runs / n) for n in ("base", "new", "other")), "--db",
                 str(db)]) == 0
    assert "3 run directories indexed" in capsys.readouterr().out
    con = sqlite3.connect(db)
    n = dict(con.execute("SELECT r.run_dir, count(*) FROM records r GROUP BY r.run_dir"))
    assert sorted(n.values()) == [3, 5, 5]  # teacher + 2 seeds of one or two methods
    assert con.execute("SELECT count(*) FROM runs WHERE suite = 'tiny'").fetchone()[0] == 3
    score = con.execute("SELECT score, record FROM records WHERE label = 'kd' LIMIT 1").fetchone()
    assert json.loads(score[1])["score"] == score[0]
    con.close()
    assert main(["index", str(runs / "base"), "--db", str(db)]) == 0  # re-indexing replaces
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 13
    con.close()
    with pytest.raises(CompressBenchError, match="sst2 data differs"):
        main(["compare", "--db", str(db), "--suite", "tiny", "-o", str(runs / "all"),
              "--traceback"])
