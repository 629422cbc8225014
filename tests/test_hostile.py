"""A run directory, cache or model folder from a hostile stranger: it runs no code, nothing is
written or read through a link it planted, nothing outside it is copied out, a malformed record
is set aside; and a killed worker frees the measurement lock and no worker outlives the run.
(Issue 21; the numbers in the test names follow its list.)"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from compressbench import models, results, safefs
from compressbench.cli import main
from compressbench.errors import CompressBenchError
from compressbench.export import export, model_card
from compressbench.models import load_model, save_model
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import suite_file, wait_for
from tests.test_report import copy_saved_run
from tests.test_runner import manager, suite_text

EVIL_PY = "import pathlib; pathlib.Path({marker!r}).write_text('ran')\n"


def fake_run(run_dir, folder_name="sst2__m__seed1", **extra) -> dict:
    """A run directory with one ok record whose model lives in models/<folder_name>."""
    record = {"job_id": "sst2/m/seed1", "task": "sst2", "label": "m", "seed": 1, "key": "k",
              "status": "ok", "main_metric": "accuracy", "metrics": {"accuracy": 0.5},
              "score": 0.5, "model_dir": f"models/{folder_name}", "steps": [], **extra}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.jsonl").write_text(json.dumps(record) + "\n")
    (run_dir / "models" / folder_name).mkdir(parents=True)
    return record


# ------------------------------------------------------------------------------ 1. remote code

def plant_remote_code(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil-bert", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig",
                     "AutoModelForSequenceClassification": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))


@pytest.mark.parametrize("fmt", ["hf", "weights", "onnx"])
def test_1_a_model_folder_asking_for_custom_code_is_refused_without_a_prompt(tmp_path, fmt):
    marker = tmp_path / "ran"
    folder = tmp_path / "m"
    plant_remote_code(folder, marker)
    (folder / "compressbench.json").write_text(json.dumps({"format": fmt,
                                                           "kind": "classification"}))
    with pytest.raises(CompressBenchError, match="auto_map"):
        load_model(folder)
    assert not marker.exists()


def test_1_export_of_a_planted_custom_code_model_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    fake_run(run)
    folder = run / "models" / "sst2__m__seed1"
    plant_remote_code(folder, marker)
    (folder / "compressbench.json").write_text(json.dumps({"format": "hf",
                                                           "kind": "classification"}))
    code = main(["export", str(run), "--task", "sst2", "--method", "m", "-o",
                 str(tmp_path / "out")])
    assert code == 2 and "auto_map" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_1_a_teacher_or_tokenizer_folder_with_custom_code_is_refused(tmp_path, tiny_teacher):
    marker = tmp_path / "ran"
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    config = json.loads((teacher / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel"}
    (teacher / "config.json").write_text(json.dumps(config))
    (teacher / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))
    for load in (lambda: models.load_pretrained(str(teacher), "classification", 2),
                 lambda: models.load_tokenizer(str(teacher))):
        with pytest.raises(CompressBenchError, match="auto_map"):
            load()
    assert not marker.exists()


# ------------------------------------------------------------------------------ 2. symlinks

@pytest.fixture()
def outside(tmp_path):
    """A file outside the run directory that a planted link points to."""
    target = tmp_path / "outside" / "precious.txt"
    target.parent.mkdir()
    target.write_text("precious")
    return target


def test_2_report_never_writes_through_planted_links(tmp_path, outside, capsys):
    run = tmp_path / "run"
    run.mkdir()
    copy_saved_run(run)
    for name in ("report.md.tmp", "report.html.tmp", "report.csv.tmp", ".report.md.tmp"):
        (run / name).symlink_to(outside)
    assert main(["report", str(run), "--format", "md,html,csv"]) == 0
    assert outside.read_text() == "precious"
    assert (run / "report.md").is_file() and not (run / "report.md").is_symlink()
    capsys.readouterr()
    inner = run / "suite.yaml"
    kept = inner.read_text()
    for target, why in ((outside, "leads outside the run directory"), (inner, "symbolic link")):
        (run / "report.md").unlink()
        (run / "report.md").symlink_to(target)  # a link where the report goes
        assert main(["report", str(run), "--format", "md"]) == 2
        err = capsys.readouterr().err
        assert why in err and "report.md" in err and len(err.strip().splitlines()) == 1
    assert outside.read_text() == "precious" and inner.read_text() == kept


@pytest.mark.parametrize("name", [".lock", "suite.yaml", "environment.json", "results.jsonl"])
def test_2_run_refuses_a_planted_link_in_its_output(tmp_path, tiny_teacher, data_dir, outside,
                                                    name):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to(outside)
    with pytest.raises(CompressBenchError, match="symbolic link"):
        run_suite(suite, manager(), data_dir, run, tmp_path / "cache")
    assert outside.read_text() == "precious"


def test_2_planted_temp_links_in_a_run_are_never_written_through(tmp_path, tiny_teacher,
                                                                 data_dir, outside):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    run = tmp_path / "run"
    for folder, names in {"references": ["sst2.tmp", "sst2.json.tmp", ".sst2.json.tmp"],
                          "predictions": ["sst2__teacher__seed1.tmp"],
                          ".": ["results.jsonl.tmp", "suite.yaml.tmp"]}.items():
        (run / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (run / folder / name).symlink_to(outside)
    records = run_suite(suite, manager(), data_dir, run, tmp_path / "cache")
    assert all(r["status"] == "ok" for r in records)
    assert outside.read_text() == "precious"
    assert (run / "references" / "sst2.json").is_file()


def test_2_safefs_refuses_links_and_writes_atomically(tmp_path, outside):
    link = tmp_path / "x.json"
    link.symlink_to(outside)
    for write in (lambda: safefs.write_atomic(link, "new"), lambda: safefs.open_append(link),
                  lambda: safefs.open_rw(link), lambda: safefs.read_bytes(link)):
        with pytest.raises(CompressBenchError, match="symbolic link"):
            write()
    assert outside.read_text() == "precious"
    safefs.write_atomic(tmp_path / "y.json", "ok")
    assert (tmp_path / "y.json").read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------ 3. export

@pytest.fixture()
def real_run(tmp_path, tiny_teacher, data_dir):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    run = tmp_path / "run"
    records = run_suite(suite, manager(), data_dir, run, tmp_path / "cache")
    assert all(r["status"] == "ok" for r in records)
    return run, records


def all_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("manifest", ["absent", "kept", "lists-the-link"])
@pytest.mark.parametrize("fmt", ["native", "onnx"])
def test_3_export_copies_no_linked_secret(real_run, tmp_path, fmt, manifest):
    run, records = real_run
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("SECRET-KEY-MATERIAL")
    folder = run / records[1]["model_dir"]
    (folder / "notes.txt").symlink_to(secret / "id_rsa")
    (folder / "extra").symlink_to(secret, target_is_directory=True)
    path = folder / "manifest.json"
    if manifest == "absent":  # compressbench 0.1's folders have none: links are left out
        os.unlink(path)
    elif manifest == "lists-the-link":  # a hostile manifest
        entries = json.loads(path.read_text())
        entries["notes.txt"] = {"size": 19, "sha256": "0" * 64}
        os.unlink(path)  # it is a hard link into the cache: replace, not edit
        path.write_text(json.dumps(entries))
    out = tmp_path / "export"
    if manifest == "absent":
        export(run, "sst2", "small", out, fmt=fmt)
        assert (out / "README.md").is_file()
        assert b"SECRET-KEY-MATERIAL" not in all_bytes(out)
        assert not any(p.is_symlink() for p in out.rglob("*"))
        assert not (out / "notes.txt").exists() and not (out / "extra").exists()
    else:  # the folder no longer matches its manifest: refused, nothing written
        with pytest.raises(CompressBenchError, match="symbolic link"):
            export(run, "sst2", "small", out, fmt=fmt)
        assert not out.exists() or b"SECRET-KEY-MATERIAL" not in all_bytes(out)


# ------------------------------------------------------------------------------ 4. recipes

@pytest.mark.parametrize("ref", ["compressbench.models:torch.ops",
                                 "compressbench.models:torch.classes",
                                 "compressbench.measure.__main__:main",
                                 "compressbench.cli:main", ["not", "a", "string"]])
def test_4_a_recipe_is_checked_against_the_registry_before_any_import(tmp_path, ref):
    sys.modules.pop("compressbench.measure.__main__", None)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "compressbench.json").write_text(json.dumps(
        {"format": "weights", "kind": "classification", "factory": {"fn": ref, "kwargs": {}},
         "steps": []}))
    torch.save({}, folder / "model.pt")
    with pytest.raises(CompressBenchError, match="rebuild_step|not in compressbench"):
        load_model(folder)
    assert "compressbench.measure.__main__" not in sys.modules


@pytest.mark.parametrize("factory", [
    {"fn": "compressbench_plugins.bilstm:build_bilstm", "kwargs": {"nonsense": 1}},
    {"fn": "compressbench_plugins.bilstm:build_bilstm", "kwargs": ["a"]},
    {"kwargs": {}},
    "compressbench_plugins.bilstm:build_bilstm",
])
def test_10_bad_recipe_arguments_are_one_line_errors(tmp_path, factory):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "compressbench.json").write_text(json.dumps(
        {"format": "weights", "kind": "classification", "factory": factory, "steps": []}))
    torch.save({}, folder / "model.pt")
    with pytest.raises(CompressBenchError, match="compressbench.json"):
        load_model(folder)


# ------------------------------------------------------------------------------ 5. model card

def test_5_the_model_card_escapes_record_fields():
    evil = "<img src=x onerror=alert(1)>\n---\nevil: yes"
    record = {"job_id": "sst2/m/seed1", "task": "sst2", "label": "m", "seed": 1, "key": "k",
              "status": "ok", "teacher": "<script>alert(2)</script>", "suite": evil,
              "suite_sha256": "<b>", "main_metric": "accuracy",
              "model": {"parameters": 10, "size_bytes": 40, "format": "<hf>"},
              "metrics": {"accuracy": 0.5, "<script>x</script>": 0.1},
              "steps": [{"method": evil, "params": {"a": "</code><script>alert(3)</script>"},
                         "training": {}}],
              "data": {"eval_<svg onload=alert(4)>": 3, "val_source": "<iframe>"}}
    card = model_card(record, None, "hf")
    for raw in ("<img", "<script", "<svg", "<iframe", "<b>", "</code>"):
        assert raw not in card
    import yaml
    front = card.split("---\n")[1]
    meta = yaml.safe_load(front)
    assert set(meta) == {"library_name", "tags", "datasets", "metrics"}  # no base_model
    assert len(meta["tags"]) == 2 and meta["datasets"] == ["nyu-mll/glue"]
    import re
    assert all(re.fullmatch(r"[A-Za-z0-9._+-]+", m) for m in meta["metrics"] + meta["tags"])
    body = card.split("---\n", 2)[2]
    assert "\nevil: yes" not in body and "\n---\n" not in body


# ------------------------------------------------------------------------------ 6, 7. workers

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from compressbench.quiet import Turnstile
    with Turnstile(Path(sys.argv[1])).measuring():
        Path(sys.argv[2]).write_text("held")
        time.sleep(600)
""")


def test_6_the_measurement_lock_dies_with_a_killed_holder(tmp_path):
    """A worker killed while it measures (kill -9, or the pool terminating it) frees the lock,
    so the next worker measures instead of waiting forever."""
    import threading

    from compressbench.quiet import Turnstile

    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(held)])
    try:
        wait_for(held.is_file, "the holder took the lock", holder)
        got = threading.Event()

        def take():
            with Turnstile(tmp_path).measuring():
                got.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        waiter.join(0.5)
        assert not got.is_set()  # really exclusive while the holder lives
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        wait_for(got.is_set, "the lock was taken after its holder died")
    finally:
        if holder.poll() is None:
            holder.kill()


SLOW = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import compressbench
    from compressbench.api import Method

    PIDS = Path({pids!r})

    class Slow(Method):
        name = "slow"
        description = "writes its worker's pid, then trains for ten minutes"

        def build(self, ctx, params):
            with open(PIDS, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(600)
            return ctx.teacher()

    @compressbench.hookimpl
    def register_methods(register):
        register(Slow())
""")


def test_7_local_workers_die_with_a_killed_run(tmp_path, tiny_teacher, data_dir):
    import psutil

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pids = tmp_path / "pids"
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW.format(pids=str(pids)))
    methods = "  - {name: slow, label: a}\n"  # two seeds: two jobs at once
    text = suite_text(tiny_teacher, methods=methods, seeds="[1, 2]").replace(
        "version: 1\n", "version: 1\nplugins: [slow.py]\n")
    suite = suite_file(tmp_path, text)
    env = {**os.environ, "COMPRESSBENCH_CACHE": str(tmp_path / "cache")}
    run = subprocess.Popen([sys.executable, "-m", "compressbench.cli", "run", str(suite),
                            "--data-dir", str(data_dir), "--output", str(tmp_path / "run"),
                            "--executor", "local", "--workers", "2"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids.is_file() and len(pids.read_text().split()) == 2,
                 "both workers run a job", run)
        workers = [int(p) for p in pids.read_text().split()]
        assert all(psutil.Process(w).ppid() == run.pid for w in workers)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        from tests.test_faults import gone
        assert all(gone(w) for w in workers), "a worker outlived the killed run"
    finally:
        if run.poll() is None:
            run.kill()
        for w in [int(p) for p in pids.read_text().split()] if pids.is_file() else []:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ------------------------------------------------------------------------------ 8. records

BAD_LINES = [b'{"job_id": "sst2/x/seed1", "task": "sst2\xff", "label": "x"}',
             b"[]",
             b'{"job_id": "sst2/y/seed1", "task": "sst2", "label": "y", "status": "ok"}',
             b'{"job_id": "sst2/z/seed1", "task": "sst2", "label": "z", "key": "k", '
             b'"status": "ok", "metrics": "high"}',
             b'{"job_id": "sst2/w/seed1", "task": "ss\\u0000t2", "label": "w", "key": "k", '
             b'"status": "ok"}']


def test_8_malformed_records_are_set_aside_not_fatal(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    copy_saved_run(run)
    good = len((run / "results.jsonl").read_bytes().splitlines())
    with open(run / "results.jsonl", "ab") as f:
        f.write(b"\n".join(BAD_LINES) + b"\n")
    records = results.read(run)
    assert len(records) == good
    err = capsys.readouterr().err
    for lineno in range(good + 1, good + 1 + len(BAD_LINES)):
        assert f"results.jsonl:{lineno}: setting aside" in err
    rejected = (run / results.REJECTED).read_bytes().splitlines()
    assert rejected == BAD_LINES
    results.read(run)  # read again: kept once, not twice
    assert (run / results.REJECTED).read_bytes().splitlines() == BAD_LINES
    assert main(["report", str(run), "--format", "md"]) == 0
    assert (run / "report.md").is_file()


def test_8_resume_reruns_a_job_whose_record_was_rejected(real_run, tiny_teacher, tmp_path,
                                                         data_dir):
    run, records = real_run
    lines = (run / "results.jsonl").read_bytes().splitlines()
    (run / "results.jsonl").write_bytes(lines[0] + b"\n" + lines[1][:-1] + b"\xff}\n")
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    again = run_suite(suite, manager(), data_dir, run, tmp_path / "cache")
    assert [r["job_id"] for r in again] == [r["job_id"] for r in records]
    assert all(r["status"] == "ok" for r in again)


# ------------------------------------------------------------------------------ 9. weights

def test_9_weights_that_match_no_tensor_are_refused(tmp_path, tiny_teacher):
    from safetensors.torch import save_file

    model = models.load_pretrained(str(tiny_teacher), "classification", 2)
    folder = save_model(model, tmp_path / "m", "classification")
    save_file({"unrelated.weight": torch.zeros(3)}, str(folder / "model.safetensors"))
    with pytest.raises(CompressBenchError, match="lacks"):
        load_model(folder)


@pytest.mark.parametrize("header", [b"\xff" * 8, (10**12).to_bytes(8, "little"),
                                    (40).to_bytes(8, "little") + b'{"a": {"dtype": "F32", '
                                    b'"shape": [1000], "data_offsets": [0, 4000]}}'])
def test_10_a_safetensors_file_that_lies_is_one_line(tmp_path, tiny_teacher, header):
    model = models.load_pretrained(str(tiny_teacher), "classification", 2)
    folder = save_model(model, tmp_path / "m", "classification")
    (folder / "model.safetensors").write_bytes(header)
    with pytest.raises(CompressBenchError, match="model"):
        load_model(folder)


def test_9_an_onnx_model_that_cannot_load_does_not_export(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    run = tmp_path / "run"
    fake_run(run)
    folder = run / "models" / "sst2__m__seed1"
    (folder / "compressbench.json").write_text(json.dumps({"format": "onnx",
                                                           "kind": "classification"}))
    (folder / "model.onnx").write_bytes(b"not an onnx graph")
    code = main(["export", str(run), "--task", "sst2", "--method", "m", "-o",
                 str(tmp_path / "out")])
    assert code == 2 and "does not run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_2_a_linked_suite_yaml_is_not_copied_into_the_report(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    copy_saved_run(run)
    outside.write_text("version: 1  # SECRET-FROM-OUTSIDE\n")
    (run / "suite.yaml").unlink()
    (run / "suite.yaml").symlink_to(outside)
    assert main(["report", str(run), "--format", "html"]) == 0
    assert "SECRET-FROM-OUTSIDE" not in (run / "report.html").read_text()
