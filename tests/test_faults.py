"""Runs and the cache survive faults: a torn results line, a damaged or deleted cached file, two
runs on one directory, a killed parent, a failed build."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from compressbench import cache, results, rundir
from compressbench.errors import CompressBenchError
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import suite_file, wait_for
from tests.test_runner import manager, suite_text


def test_a_record_appended_after_a_torn_line_is_kept(tmp_path, capsys):
    def rec(label, key):
        return {"job_id": f"t/{label}/seed1", "task": "t", "label": label, "seed": 1,
                "key": key, "status": "ok"}

    results.append(tmp_path, rec("a", "k"))
    with open(tmp_path / results.RESULTS, "a") as f:
        f.write('{"job_id": "t/b/seed1", "ke')  # killed mid-write
    results.append(tmp_path, rec("c", "k2"))
    assert results.finished(tmp_path) == {"t/a/seed1": "k", "t/c/seed1": "k2"}
    err = capsys.readouterr().err
    assert "dropped a torn last record" in err and "unreadable" not in err


def test_only_one_run_at_a_time_per_run_directory(tmp_path, tiny_teacher, data_dir):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    with rundir.lock(tmp_path / "run"):  # as a second process would see it
        with pytest.raises(CompressBenchError, match="another compressbench run is using"):
            run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    assert not (tmp_path / "run" / results.RESULTS).exists()


@pytest.fixture()
def cached_run(tmp_path, tiny_teacher, data_dir):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    records = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    return suite, records, data_dir


def test_cached_models_are_sealed_and_read_only(cached_run, tmp_path):
    _, records, _ = cached_run
    folder = tmp_path / "cache" / "models" / os.path.basename(records[1]["cache_dir"])
    assert cache.check(folder) is None
    weights = next(folder.glob("model.*"))
    assert not os.stat(weights).st_mode & 0o222  # no write bit, for anyone
    linked = tmp_path / "run" / records[1]["model_dir"] / weights.name
    assert os.stat(linked).st_ino == os.stat(weights).st_ino  # the run's copy is that file
    assert not list((tmp_path / "cache").glob("scratch/*"))  # builds leave no scratch


@pytest.mark.parametrize("damage", ["overwrite", "delete"])
def test_a_damaged_cached_model_is_rebuilt_with_a_warning(cached_run, tmp_path, capsys,
                                                         damage):
    suite, records, data_dir = cached_run
    folder = tmp_path / "cache" / "models" / os.path.basename(records[1]["cache_dir"])
    weights = next(folder.glob("model.*"))
    if damage == "overwrite":
        os.chmod(weights, 0o644)
        with open(weights, "r+b") as f:  # 2 kB of garbage in the middle, same size
            f.seek(weights.stat().st_size // 2)
            f.write(os.urandom(2048))
    else:
        weights.unlink()
    capsys.readouterr()
    again = run_suite(suite, manager(), data_dir, tmp_path / "run2", tmp_path / "cache")
    assert "is damaged" in capsys.readouterr().err
    assert again[1]["status"] == "ok" and again[1]["score"] == records[1]["score"]
    assert cache.check(folder) is None


def test_the_measuring_child_dies_with_its_parent(tmp_path):
    """kill -9 of the parent: Linux delivers SIGKILL to the child (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pid_file = tmp_path / "child.pid"
    child_code = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
                  f"time.sleep(60)")
    script = tmp_path / "parent.py"
    script.write_text("import subprocess, sys\n"
                      "from compressbench.measure import die_with_parent\n"
                      f"subprocess.run([sys.executable, '-c', {child_code!r}], "
                      "preexec_fn=die_with_parent)\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    wait_for(lambda: pid_file.is_file() and pid_file.read_text(), "the child wrote its pid",
             parent)
    child = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    if not gone(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its killed parent")


SLEEPY = """
import os, time
from pathlib import Path
import compressbench

class Sleepy:
    name = "sleepy"
    description = "a runtime that hangs on load"
    packages = ()
    needs_prepare = False

    def missing(self):
        return None

    def prepare(self, model, workdir, sample):
        return {}

    def load(self, model, workdir, threads):
        Path(PID_FILE).write_text(str(os.getpid()))
        time.sleep(120)

@compressbench.hookimpl
def register_backends(register):
    register(Sleepy())
"""


@pytest.fixture
def sleepy(tmp_path, tiny_teacher):
    """A saved model, and a plugin file whose backend hangs when it loads it (writing the
    measuring child's pid first)."""
    from compressbench import models

    folder = models.save_model(models.load_pretrained(str(tiny_teacher), "classification", 2),
                               tmp_path / "model", "classification")
    plugin = tmp_path / "sleepy.py"
    plugin.write_text(f"PID_FILE = {str(tmp_path / 'child.pid')!r}\n" + SLEEPY)
    return folder, plugin, tmp_path / "child.pid"


def gone(pid: int, safety_s: float = 120) -> bool:
    """Whether ``pid`` ends (or is a zombie) within ``safety_s``, a net for a loaded machine:
    it returns as soon as the process is gone."""
    deadline = time.monotonic() + safety_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                # a killed child of a living parent stays a zombie until reaped
                if f.read().split(") ")[1].startswith("Z"):
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


FEATURES = [{"input_ids": [101, 2000 + i, 2001, 102]} for i in range(4)]


@pytest.mark.parametrize("start", ["fork", "exec"])
def test_a_measurement_past_its_timeout_is_killed_and_the_next_one_runs(sleepy, monkeypatch,
                                                                       start):
    from compressbench.measure import measure_model
    from compressbench.plugins import get_plugin_manager
    from compressbench.suite import Measure

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    monkeypatch.setenv("COMPRESSBENCH_MEASURE_START", start)
    folder, plugin, pid_file = sleepy
    pm = get_plugin_manager([plugin])
    quick = dict(latency_samples=2, warmup=1, throughput_samples=2, throughput_batch_size=2)
    limit = 3 if start == "fork" else 8  # exec: the child imports torch first (4-5 s; the
    # loop below doubles the limit on a machine too loaded for that)
    while True:  # until the child reached the hanging load before its limit fell
        hung = measure_model(folder, FEATURES, Measure(**quick, timeout_s=limit), pm,
                             backends=["sleepy"])["backends"]["sleepy"]
        assert hung["status"] == "failed"
        assert f"took over measure.timeout_s={limit}s" in hung["error"]
        if pid_file.is_file() and pid_file.read_text():
            break
        assert limit < 600, "the measuring child never reached the backend's load"
        limit *= 2  # a loaded machine: the child was killed while still starting
    assert gone(int(pid_file.read_text()))
    ok = measure_model(folder, FEATURES, Measure(**quick), pm, backends=["torch"])
    assert ok["backends"]["torch"]["status"] == "ok"
    assert ok["backends"]["torch"]["latency_ms"]["n"] == 2


def test_the_fork_server_and_its_child_die_with_the_parent(sleepy):
    """kill -9 of compressbench mid-measurement leaves neither the fork server nor the
    measuring child behind."""
    import psutil

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    folder, plugin, pid_file = sleepy
    script = folder.parent / "parent.py"
    script.write_text(
        "from compressbench.measure import measure_model\n"
        "from compressbench.plugins import get_plugin_manager\n"
        "from compressbench.suite import Measure\n"
        f"measure_model({str(folder)!r}, {FEATURES!r}, Measure(), "
        f"get_plugin_manager([{str(plugin)!r}]), backends=['sleepy'])\n")
    env = {**os.environ, "COMPRESSBENCH_MEASURE_START": "fork"}
    parent = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        wait_for(lambda: pid_file.is_file() and pid_file.read_text(),
                 "the measuring child started", parent)
    except AssertionError:
        parent.kill()
        raise
    child = int(pid_file.read_text())
    server = psutil.Process(child).ppid()
    assert psutil.Process(server).ppid() == parent.pid
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        assert gone(server) and gone(child), "the fork server or its child outlived the parent"
    finally:
        for pid in (child, server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_temp_folders_of_dead_measurements_are_removed(tmp_path, monkeypatch):
    import tempfile

    from compressbench.measure import TMP_PREFIX, remove_stale_temp_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{TMP_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{TMP_PREFIX}{os.getpid()}-def"
    stale.mkdir()
    live.mkdir()
    remove_stale_temp_dirs()
    assert not stale.exists() and live.exists()


def test_a_failed_build_leaves_no_scratch_folder(tmp_path, tiny_teacher, data_dir):
    methods = "  - {name: broken}\n"
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, methods=methods)))
    records = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    assert records[-1]["status"] == "failed"
    assert not (tmp_path / "cache" / "scratch").exists()


def test_resuming_with_an_edited_suite_warns(cached_run, tmp_path, tiny_teacher, capsys):
    _, _, data_dir = cached_run
    edited = suite_text(tiny_teacher, seeds="[1, 2]")  # one more seed
    suite = load_suite(suite_file(tmp_path, edited, name="edited.yaml"))
    capsys.readouterr()
    run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    assert "records made with another version of the suite" in capsys.readouterr().err


def test_damaged_teacher_logits_are_recomputed(tmp_path, tiny_teacher, data_dir, capsys):
    methods = "  - {name: kd, student: {layers: 1}}\n"
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, methods=methods)))
    first = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    [logits] = (tmp_path / "cache" / "teacher-outputs").rglob("*.pt")
    assert cache.check_file(logits) is None and not os.stat(logits).st_mode & 0o222
    os.chmod(logits, 0o644)
    with open(logits, "r+b") as f:  # flip bytes inside the tensor data, same size
        f.seek(logits.stat().st_size - 200)
        f.write(os.urandom(64))
    for folder in (tmp_path / "cache" / "models").iterdir():  # rebuild the student only
        if folder.name != os.path.basename(first[0]["cache_dir"]):
            import shutil
            shutil.rmtree(folder)
    capsys.readouterr()
    again = run_suite(suite, manager(), data_dir, tmp_path / "run2", tmp_path / "cache")
    assert "cached teacher logits" in capsys.readouterr().err
    assert again[1]["score"] == first[1]["score"] and cache.check_file(logits) is None
