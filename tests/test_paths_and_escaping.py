"""Names from a suite or a foreign run directory can neither lead outside the run directory,
collide on one folder, nor inject markup into the reports."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from compressbench.cli import main
from compressbench.errors import CompressBenchError, ConfigError
from compressbench.rundir import inside, job_slug
from compressbench.suite import load_suite
from tests.conftest import suite_file
from tests.test_report import copy_saved_run

SUITE = """
version: 1
tasks: [{tasks}]
methods:
  - {{name: finetune, label: {label}}}
"""


@pytest.mark.parametrize("task, label, key", [
    ("{name: '../../x', kind: classification, train: a.csv, dev: a.csv, text_columns: [t], "
     "label_column: y}", "ok", "tasks[0].name"),
    ("{name: /tmp/x, kind: classification, train: a.csv, dev: a.csv, text_columns: [t], "
     "label_column: y}", "ok", "tasks[0].name"),
    ("sst2", "a/b", "methods[0].label"),
    ("sst2", "a__b", "methods[0].label"),  # would collide with task a, label b on disk
    ("sst2", "'..'", "methods[0].label"),
    ("sst2", "'x\" onmouseover=\"alert(7)'", "methods[0].label"),
])
def test_unsafe_names_are_refused_when_the_suite_is_read(tmp_path, task, label, key):
    path = suite_file(tmp_path, SUITE.format(tasks=task, label=label))
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_suite(path)


def test_run_directory_paths_stay_inside(tmp_path):
    assert inside(tmp_path, "models", "sst2__kd__seed1") == tmp_path.resolve() / \
        "models/sst2__kd__seed1"
    for bad in (("..", "x"), ("/etc/passwd",), ("models", "../../x")):
        with pytest.raises(CompressBenchError, match="outside the run directory"):
            inside(tmp_path, *bad)
    with pytest.raises(CompressBenchError):
        job_slug("../../x/seed1")


def test_a_foreign_record_cannot_point_export_outside(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    record = {"job_id": "sst2/x/seed1", "task": "sst2", "label": "x", "seed": 1,
              "status": "ok", "model_dir": "../../../etc", "key": "k", "steps": []}
    (run / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["export", str(run), "--task", "sst2", "--method", "x",
                 "-o", str(tmp_path / "out")]) == 2
    assert "outside the run directory" in capsys.readouterr().err


HOSTILE_LABEL = "<img src=x onerror=alert(1)>|[x](javascript:alert(1))$\\frac{$"
HOSTILE_TASK = 'T" onmouseover="alert(7)'


@pytest.fixture()
def hostile_run(tmp_path):
    run = copy_saved_run(tmp_path)
    lines = []
    for line in (run / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["label"] == "kd-2L":
            r["label"] = HOSTILE_LABEL
            r["job_id"] = f"{r['task']}/x{r['seed']}/seed{r['seed']}"
        if r["task"] == "sst2":
            r["task"] = HOSTILE_TASK
            r["job_id"] = "T/" + r["job_id"].split("/", 1)[1]
        lines.append(json.dumps(r))
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    return run


def event_attributes(page: str) -> list[str]:
    """Every on* attribute (onmouseover=, onerror=, ...) an HTML parser finds in ``page``."""
    from html.parser import HTMLParser

    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(f"<{tag} {k}>" for k, _ in attrs if k.startswith("on"))

    Parser().feed(page)
    return found


def test_hostile_names_are_escaped_in_every_report(hostile_run):
    assert main(["report", str(hostile_run), "--format", "md,html,csv"]) == 0
    page = (hostile_run / "report.html").read_text()
    assert not event_attributes(page) and "<img src=x" not in page
    for value in re.findall(r'\bid="([^"]*)"', page):
        assert re.fullmatch(r"[A-Za-z0-9_:.\-]+|[^\"<>]*", value)
    md = (hostile_run / "report.md").read_text()
    assert not re.search(r"(?<!\\)<img", md) and not re.search(r"(?<!\\)\]\(javascript:", md)
    assert "\\<img src=x onerror=alert(1)\\>\\|\\[x\\](javascript:alert(1))$\\\\frac{$" in md
    table_rows = [ln for ln in md.splitlines() if ln.startswith("| \\<img")]
    header = next(ln for ln in md.splitlines() if ln.startswith("| method |"))
    cells = re.compile(r"(?<!\\)\|")
    assert table_rows and all(len(cells.findall(r)) == len(cells.findall(header))
                              for r in table_rows[:1])
    assert (hostile_run / "plots").is_dir()  # the '$' label did not crash matplotlib


def test_a_hostile_task_name_cannot_write_outside(tmp_path):
    (tmp_path / "run").mkdir()
    run = copy_saved_run(tmp_path / "run")
    lines = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    for r in lines:
        if r["task"] == "stsb":
            r["task"] = "../../escaped"
    (run / "results.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    try:
        main(["report", str(run), "--format", "md,html"])
    except CompressBenchError:
        pass
    assert not list(tmp_path.glob("escaped*")) and not (tmp_path.parent / "escaped").exists()
    shutil.rmtree(run)
