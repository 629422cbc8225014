"""The runner on a tiny teacher and tiny data: records, hooks, cache, resume, failures."""
from __future__ import annotations

import json

import pytest

from compressbench import Method, hookimpl, results
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import suite_file


class Recorder:
    """Records every lifecycle hook call."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def run_started(self, suite, run_dir):
        self.calls.append(("run_started", suite.name))

    @hookimpl
    def job_started(self, job):
        self.calls.append(("job_started", job.id))

    @hookimpl
    def job_event(self, job, event, data):
        self.calls.append(("job_event", job.id, event))

    @hookimpl
    def job_finished(self, job, record):
        self.calls.append(("job_finished", job.id, record.status))

    @hookimpl
    def run_finished(self, run_dir, records):
        self.calls.append(("run_finished", len(records)))

    @hookimpl
    def run_progress(self, done, total, failed, running, skipped, eta_s):
        self.calls.append(("run_progress", done, total, failed, skipped, eta_s))

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


class Broken(Method):
    name = "broken"

    def build(self, ctx, params):
        raise RuntimeError("this method has a bug")


class Interrupt(Method):
    name = "interrupt"

    def build(self, ctx, params):
        raise KeyboardInterrupt


class TestMethods:
    @hookimpl
    def register_methods(self, register):
        register(Broken())
        register(Interrupt())


def suite_text(teacher, methods="  - {name: finetune, label: small, student: {layers: 1}}\n",
               tasks="[sst2]", measure="{enabled: false}", seeds="[1]"):
    return (f"version: 1\nname: tiny\nteacher: {{model: '{teacher}'}}\ntasks: {tasks}\n"
            f"methods:\n{methods}seeds: {seeds}\n"
            f"training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,"
            f" max_train_samples: 40, max_val_samples: 8}}\nmeasure: {measure}\n")


def manager(recorder=None):
    pm = get_plugin_manager()
    pm.register(TestMethods(), "test-methods")
    if recorder:
        pm.register(recorder, "recorder")
    return pm


def test_run_writes_records_and_calls_hooks(tmp_path, tiny_teacher, data_dir):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, seeds="[1, 2]")))
    rec = Recorder()
    records = run_suite(suite, manager(rec), data_dir, tmp_path / "run", tmp_path / "cache")
    assert [r["job_id"] for r in records] == ["sst2/teacher/seed1", "sst2/small/seed1",
                                              "sst2/small/seed2"]
    assert all(r["status"] == "ok" for r in records)
    r = records[1]
    assert r["main_metric"] == "accuracy" and 0 <= r["score"] <= 1
    assert set(r["metrics"]) >= {"accuracy", "macro_f1", "per_class_f1"}
    assert r["data"]["train"] == 40 and r["data"]["val"] == 8
    assert r["model"]["parameters"] < records[0]["model"]["parameters"]
    assert r["env"]["versions"]["torch"]
    assert r["training"][0]["runs"][0]["steps"] == 5
    assert rec.calls[0] == ("run_started", "tiny")
    assert rec.calls[-1] == ("run_finished", 3)
    assert len(rec.named("job_started")) == 3 and len(rec.named("job_finished")) == 3
    progress = rec.named("run_progress")  # before the first job, then after each
    assert [c[1:5] for c in progress] == [(d, 3, 0, 0) for d in range(4)]
    assert progress[0][5] is None and progress[1][5] > 0 and progress[-1][5] == 0  # the ETA
    assert ("job_event", "sst2/small/seed1", "validation") in rec.calls
    preds = json.loads((tmp_path / "run/predictions/sst2__small__seed1.json").read_text())
    assert len(preds["dev"]) == 20
    assert (tmp_path / "run/suite.yaml").read_text() == suite.text


def test_second_run_skips_and_new_run_dir_reuses_cache(tmp_path, tiny_teacher, data_dir,
                                                       monkeypatch):
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")

    import compressbench.training as training

    def no_training(*a, **k):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(training, "train", no_training)
    rec = Recorder()
    records = run_suite(suite, manager(rec), data_dir, tmp_path / "run", tmp_path / "cache")
    assert rec.named("job_started") == []  # everything was already in the run directory
    assert rec.named("run_progress") == [("run_progress", 2, 2, 0, 2, None)]
    assert len(records) == 2

    rec = Recorder()
    records = run_suite(suite, manager(rec), data_dir, tmp_path / "run2", tmp_path / "cache")
    assert len(rec.named("job_started")) == 2  # evaluated again in the new run directory,
    assert [c[2] for c in rec.named("job_event")] == ["cache_hit", "cache_hit"]  # not trained
    assert all(r["status"] == "ok" for r in records)


def test_changed_settings_rerun_the_job(tmp_path, tiny_teacher, data_dir):
    path = suite_file(tmp_path, suite_text(tiny_teacher))
    run_suite(load_suite(path), manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    path.write_text(suite_text(tiny_teacher).replace("{layers: 1}", "{layers: 2}"))
    rec = Recorder()
    run_suite(load_suite(path), manager(rec), data_dir, tmp_path / "run", tmp_path / "cache")
    assert [c[1] for c in rec.named("job_started")] == ["sst2/small/seed1"]


def test_failed_job_is_recorded_and_suite_continues(tmp_path, tiny_teacher, data_dir):
    methods = ("  - {name: broken}\n"
               "  - {name: finetune, label: small, student: {layers: 1}}\n")
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, methods)))
    records = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    by_id = {r["job_id"]: r for r in records}
    failed = by_id["sst2/broken/seed1"]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: this method has a bug"
    assert "Traceback" in failed["traceback"]
    assert by_id["sst2/small/seed1"]["status"] == "ok"
    # a re-run retries the failed job only
    rec = Recorder()
    run_suite(suite, manager(rec), data_dir, tmp_path / "run", tmp_path / "cache")
    assert [c[1] for c in rec.named("job_started")] == ["sst2/broken/seed1"]


def test_interrupt_loses_nothing_and_resumes(tmp_path, tiny_teacher, data_dir):
    methods = ("  - {name: finetune, label: small, student: {layers: 1}}\n"
               "  - {name: interrupt}\n")
    path = suite_file(tmp_path, suite_text(tiny_teacher, methods))
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite(path), manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    saved = results.read(tmp_path / "run")
    assert [r["job_id"] for r in saved] == ["sst2/teacher/seed1", "sst2/small/seed1"]
    # the user removes the bad entry and runs again: finished jobs are not redone
    path.write_text(suite_text(tiny_teacher))
    rec = Recorder()
    run_suite(load_suite(path), manager(rec), data_dir, tmp_path / "run", tmp_path / "cache")
    assert rec.named("job_started") == []


def test_torn_last_line_is_ignored(tmp_path, capsys):
    results.append(tmp_path, {"job_id": "t/a/seed1", "task": "t", "label": "a", "seed": 1,
                              "key": "k", "status": "ok"})
    with open(tmp_path / results.RESULTS, "a") as f:
        f.write('{"job_id": "t/b/seed1", "ke')  # killed mid-write
    assert results.finished(tmp_path) == {"t/a/seed1": "k"}
    assert "torn last record" in capsys.readouterr().err
    assert not (tmp_path / results.REJECTED).exists()  # torn, not malformed


def test_measurement_in_subprocess(tmp_path, tiny_teacher, data_dir):
    measure = "{latency_samples: 5, warmup: 1, throughput_samples: 8, throughput_batch_size: 4}"
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, measure=measure)))
    records = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    m = records[0]["measure"]["backends"]["torch"]
    assert m["status"] == "ok"
    assert m["latency_ms"]["n"] == 5 and len(m["latency_samples_ms"]) == 5
    assert m["cpu_ms"]["n"] == 5 and m["cpu_ms"]["p50"] > 0
    assert m["latency_ms"]["p50"] > 0 and m["throughput"]["examples_per_s"] > 0
    assert m["threads"] == 1
    assert 0 < m["memory_mb"]["peak_rss"] < 4000
    assert records[0]["measure"]["settings"]["latency_samples"] == 5
    assert records[0]["model"]["size_bytes"] > 0


def test_user_task_and_token_task(tmp_path, tiny_teacher, data_dir):
    csv = "text,label\n" + "".join(f"{'great' if i % 2 else 'awful'} film {i},"
                                   f"{'pos' if i % 2 else 'neg'}\n" for i in range(30))
    (tmp_path / "train.csv").write_text(csv)
    (tmp_path / "dev.csv").write_text(csv)
    tasks = ("\n  - conll2003\n  - {name: reviews, train: train.csv, dev: dev.csv, "
             "text_columns: [text], label_column: label}")
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, tasks=tasks)))
    records = run_suite(suite, manager(), data_dir, tmp_path / "run", tmp_path / "cache")
    by_id = {r["job_id"]: r for r in records}
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert set(by_id["conll2003/small/seed1"]["metrics"]) >= {"f1", "precision", "recall"}
    assert by_id["conll2003/teacher/seed1"]["data"]["val_source"].startswith("official")
    assert by_id["reviews/small/seed1"]["main_metric"] == "accuracy"


def test_console_progress_says_how_far_and_how_long():
    import io

    from compressbench.cli import ConsoleProgress
    out = io.StringIO()  # not a terminal: plain lines, no bars
    console = ConsoleProgress(out)
    console.run_progress(done=5, total=41, failed=0, running=0, skipped=5, eta_s=None)
    console.run_progress(done=7, total=41, failed=1, running=2, skipped=5, eta_s=1500)
    console.run_progress(done=8, total=41, failed=1, running=2, skipped=5, eta_s=4000)
    assert out.getvalue().splitlines() == [
        "[compressbench] 5 of 41 jobs already done, skipped",
        "[compressbench] 7/41 jobs done, 1 failed, 2 running; about 25 min left",
        "[compressbench] 8/41 jobs done, 1 failed, 2 running; about 1 h 07 min left"]
