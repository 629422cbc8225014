"""Quiet measurements (issue 26): under the local executor a model is timed while every other
worker holds still, and each measurement records the machine's background load; the report
flags a measurement taken under load."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from compressbench.measure import load
from compressbench.quiet import Turnstile
from tests.conftest import suite_file, wait_for
from tests.test_runner import manager, suite_text

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from compressbench.quiet import Turnstile
    t = Turnstile(Path(sys.argv[1]))
    t.hold()
    steps = Path(sys.argv[2])
    while True:
        t.pause_point()
        with open(steps, "a") as f:
            f.write(".")
        time.sleep(0.005)
""")


def test_a_worker_holds_still_while_a_model_is_timed(tmp_path):
    steps = tmp_path / "steps"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(steps)])
    try:
        wait_for(lambda: steps.is_file() and steps.stat().st_size > 3, "the worker steps",
                 worker)
        with Turnstile(tmp_path).measuring():
            during = steps.stat().st_size
            for _ in range(20):  # the worker takes no step while we hold the machine
                os.sched_yield()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
            assert steps.stat().st_size == during
        wait_for(lambda: steps.stat().st_size > during, "the worker carries on", worker)
    finally:
        worker.kill()
        worker.wait()


def test_a_measurement_waits_for_the_step_in_flight(tmp_path):
    """A worker holding busy (mid-step) delays the measurement until its pause point."""
    import threading

    computing = Turnstile(tmp_path)
    computing.hold()
    started = threading.Event()

    def measure():
        with Turnstile(tmp_path).measuring():
            started.set()

    t = threading.Thread(target=measure, daemon=True)
    t.start()
    t.join(0.3)
    assert not started.is_set()  # the step in flight is not interrupted
    computing.release()  # the step ends
    wait_for(started.is_set, "the measurement started after the step")
    t.join()
    computing.close()


def test_the_load_window_counts_other_processes_and_pressure():
    before = {"wall": 0.0, "system": 100.0, "own": 10.0, "pressure": 0}
    after = {"wall": 2.0, "system": 103.5, "own": 11.9, "pressure": 400_000}
    w = load.window(before, after)
    assert w["other_cores"] == pytest.approx((3.5 - 1.9) / 2)  # 0.8 cores of others
    assert w["cpu_pressure_pct"] == pytest.approx(20.0)
    assert "0.80 cores" in load.busy_reason(w) and "20%" in load.busy_reason(w)
    assert load.busy_reason({"other_cores": 0.05, "cpu_pressure_pct": 1.0}) is None
    assert load.busy_reason({}) is None


def test_a_measurement_under_a_synthetic_load_is_flagged_in_the_report(tmp_path, tiny_teacher,
                                                                       data_dir):
    if not os.path.exists("/proc/stat"):
        pytest.skip("reads /proc/stat")
    from compressbench.cli import main
    from compressbench.runner import run_suite
    from compressbench.suite import load_suite

    measure = ("{latency_samples: 40, warmup: 2, throughput_samples: 8, "
               "throughput_batch_size: 4}")
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, measure=measure)))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)]  # every core busy with someone else
    try:
        records = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    torch_load = records[1]["measure"]["backends"]["torch"]["load"]
    assert torch_load["other_cores"] > load.OTHER_CORES_MAX, torch_load
    assert main(["report", str(tmp_path / "run"), "--format", "md"]) == 0
    md = (tmp_path / "run" / "report.md").read_text()
    assert "measurements were taken under load" in md
    assert "load while timing" in md


def test_the_second_control_is_retimed_at_the_end_of_the_run(tmp_path, tiny_teacher, data_dir):
    pytest.importorskip("onnxruntime")
    from compressbench import results
    from compressbench.cli import main
    from compressbench.runner import run_suite
    from compressbench.suite import load_suite

    measure = ("{latency_samples: 12, warmup: 1, throughput_samples: 8, "
               "throughput_batch_size: 4, agreement_samples: 8, "
               "backends: [torch, onnxruntime]}")
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, measure=measure)))
    run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    [control] = results.read_controls(tmp_path / "run")
    assert control["task"] == "sst2" and control["start"]["speedup"] > 0
    assert control["end"]["speedup"] > 0 and len(control["end"]["ci95"]) == 2
    assert "other_cores" in control["end"]["load"] or control["end"]["load"] is not None
    assert main(["report", str(tmp_path / "run"), "--format", "md"]) == 0
    assert "latency control, different models: sst2" in (tmp_path / "run/report.md").read_text()


def test_a_control_that_moved_warns(tmp_path):
    import json

    from compressbench.cli import main
    from tests.test_report import copy_saved_run

    run = copy_saved_run(tmp_path)
    pair = "teacher on onnxruntime vs teacher on torch"
    (run / "controls.jsonl").write_text(json.dumps(
        {"task": "sst2", "pair": pair, "start": {"speedup": 1.9, "ci95": [1.85, 1.95]},
         "end": {"speedup": 1.5, "ci95": [1.45, 1.55]}}) + "\n" + json.dumps(
        {"task": "stsb", "pair": pair, "start": {"speedup": 1.9, "ci95": [1.8, 2.0]},
         "end": {"speedup": 1.95, "ci95": [1.85, 2.05]}}) + "\n")
    assert main(["report", str(run), "--format", "md"]) == 0
    md = (run / "report.md").read_text()
    assert "that control moved by more than its intervals (sst2)" in md
    assert "(stsb)" not in md.split("that control moved")[-1].split("\n")[0]


def test_the_environment_names_the_cpu_family_model_and_isa():
    import platform

    from compressbench.measure.trackers import ISA_FLAGS, cpu_identity
    from compressbench.runner import environment

    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("reads /proc/cpuinfo")
    env = environment(1)
    ident = env["cpu_id"]
    assert set(ident["isa"]) <= set(ISA_FLAGS) and ident == cpu_identity()
    flags = open("/proc/cpuinfo").read()
    if platform.machine() == "x86_64":
        assert ident["vendor_id"] and ident["cpu_family"] and ident["model"]
        assert ("avx2" in ident["isa"]) == (" avx2" in flags)
