"""Plugin code in the cache key and in the record, and a reproduce line that runs again.

A plugin's source digest is part of its models' cache key: editing the code builds the model
again, where an unchanged version used to reuse the old one. Every record lists every plugin
(name, version, source, digest), and the report prints a command that runs the suite again,
from another folder and a fresh shell, with the same plugin files, data and paths.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from compressbench.cli import main
from compressbench.plugins import files_digest
from tests.conftest import suite_file
from tests.test_example_plugin import example_installed
from tests.test_runner import suite_text

PLUGIN = '''
from compressbench import api


class Scaled(api.Method):
    name = "scaled-kd"

    def build(self, ctx, params):
        student = ctx.make_student(api.StudentSpec(layers=1))
        ctx.train(student, api.kd_loss(ctx.task.kind, TEMPERATURE, 0.5),
                  feats=ctx.with_teacher_logits("train"))
        return student


TEMPERATURE = 2.0


@api.hookimpl
def register_methods(register):
    register(Scaled())
'''


def run(suite: Path, data: Path, out: Path, cache: Path, *extra: str) -> None:
    assert main(["run", str(suite), "--data-dir", str(data), "--output", str(out),
                 "--cache-dir", str(cache), "--no-report", *extra]) == 0


def records(run_dir: Path) -> dict:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return {r["job_id"]: r for r in map(json.loads, lines)}


def test_an_edit_to_a_plugin_builds_its_model_again(tmp_path, tiny_teacher, data_dir, capsys):
    plugin = tmp_path / "scaled.py"
    plugin.write_text(PLUGIN)
    suite = suite_file(tmp_path, suite_text(tiny_teacher, "  - {name: scaled-kd}\n"))
    run(suite, data_dir, tmp_path / "a", tmp_path / "cache", "--plugin", str(plugin))
    first = records(tmp_path / "a")["sst2/scaled-kd/seed1"]
    step = first["steps"][0]
    assert step["plugin"] == "file:scaled" and step["version"] == "1"
    assert step["code"] == files_digest([plugin])
    capsys.readouterr()

    run(suite, data_dir, tmp_path / "b", tmp_path / "cache", "--plugin", str(plugin))
    err = capsys.readouterr().err
    assert "reusing cached scaled-kd model" in err  # unchanged code: the model is reused

    plugin.write_text(PLUGIN.replace("TEMPERATURE = 2.0", "TEMPERATURE = 4.0"))
    run(suite, data_dir, tmp_path / "c", tmp_path / "cache", "--plugin", str(plugin))
    err = capsys.readouterr().err
    assert "reusing cached scaled-kd model" not in err  # the edit builds it again
    assert "reusing cached finetune model" in err  # the teacher's code did not change
    again = records(tmp_path / "c")["sst2/scaled-kd/seed1"]
    assert again["steps"][0]["code"] == files_digest([plugin]) != step["code"]
    assert again["cache_dir"] != first["cache_dir"]
    # a resumed run directory notices too: the job's record key changed, so it runs again
    run(suite, data_dir, tmp_path / "a", tmp_path / "cache", "--plugin", str(plugin))
    assert len((tmp_path / "a" / "results.jsonl").read_text().splitlines()) == 3


def test_records_list_every_plugin_and_the_reproduce_line_runs_again(
        tmp_path, tiny_teacher4, data_dir):
    if not example_installed():
        if os.environ.get("CI"):
            pytest.fail("CI must install examples/compressbench-drop-layers (see .ci/run)")
        pytest.skip("example plugin not installed: pip install -e "
                    "examples/compressbench-drop-layers")
    given = tmp_path / "elsewhere" / "scaled.py"  # --plugin, from another folder
    given.parent.mkdir()
    given.write_text(PLUGIN)
    listed = tmp_path / "suites" / "listed.py"  # the suite's `plugins:`, a relative path
    listed.parent.mkdir()
    listed.write_text(PLUGIN.replace('"scaled-kd"', '"listed-kd"').replace("Scaled", "Listed"))
    methods = ("  - {name: scaled-kd}\n  - {name: listed-kd}\n"
               "  - {name: drop-layers, drop: 3, recover: false}\n")
    suite = suite_file(tmp_path / "suites", suite_text(tiny_teacher4, methods)
                       + "plugins: [listed.py]\n")
    run_dir, cache = tmp_path / "runs" / "first", tmp_path / "cache"
    assert main(["run", str(suite), "--data-dir", str(data_dir), "--output", str(run_dir),
                 "--cache-dir", str(cache), "--plugin", str(given)]) == 0

    recs = records(run_dir)
    assert all(r["status"] == "ok" for r in recs.values()), recs
    plugins = {p["name"]: p for p in recs["sst2/scaled-kd/seed1"]["env"]["plugins"]}
    assert plugins["file:scaled"]["source"] == str(given.resolve())
    assert plugins["file:scaled"]["digest"] == files_digest([given])
    assert plugins["file:listed"]["digest"] == files_digest([listed])
    assert plugins["drop-layers"]["source"] == "entry point (compressbench-drop-layers)"
    assert plugins["drop-layers"]["version"] and plugins["drop-layers"]["digest"]
    assert recs["sst2/drop-layers/seed1"]["steps"][0]["plugin"] == "drop-layers"

    report = (run_dir / "report.md").read_text()
    line = re.search(r"reproduce: `(compressbench run [^`]+)`", report).group(1)
    assert re.search(r"`pip install [^`]*compressbench-drop-layers==", report)
    argv = shlex.split(line)
    assert argv[argv.index("--plugin") + 1] == str(given.resolve())
    assert "listed.py" not in line  # the suite lists it; --suite-dir finds it again

    # a fresh shell, in another folder, with nothing of this process's state
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPRESSBENCH_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               COMPRESSBENCH_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(["bash", "-c", line], cwd=tmp_path / "elsewhere", env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rerun = records(tmp_path / "runs" / "first-rerun")
    assert {j: (r["status"], r["key"]) for j, r in rerun.items()} == \
        {j: ("ok", r["key"]) for j, r in recs.items()}  # the same jobs, models and data
    assert rerun["sst2/scaled-kd/seed1"]["metrics"] == recs["sst2/scaled-kd/seed1"]["metrics"]


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "compressbench", "plugins", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert any(p["name"] == "finetune" for p in json.loads(proc.stdout))
