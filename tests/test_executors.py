"""The plan and the executors: job dependencies, the same records from inline and local worker
processes, events forwarded from workers in order, a worker killed mid-job."""
from __future__ import annotations

import json

import pytest

from compressbench import results
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import suite_file
from tests.test_runner import Recorder, suite_text

METHODS = """  - {name: finetune, label: small, student: {layers: 1}}
  - {name: kd, label: kd, student: {layers: 1}}
  - name: small-int8
    chain:
      - {name: finetune, student: {layers: 1}}
      - {name: quant-dynamic}
"""
MEASURE = "{latency_samples: 3, warmup: 1, throughput_samples: 2, throughput_batch_size: 2}"


def test_the_plan_orders_jobs_and_names_what_each_waits_for(tmp_path, tiny_teacher, data_dir):
    from compressbench.plan import plan_task, resolve_task
    from compressbench.preflight import preflight

    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, METHODS, seeds="[1, 2]")))
    pm = get_plugin_manager()
    prepared, _ = preflight(suite, pm, data_dir, str(tiny_teacher))
    data = prepared["sst2"]
    jobs = plan_task(suite, pm, str(tiny_teacher), resolve_task(suite, "sst2", pm), data)
    ids = [j.id for j in jobs]
    assert ids == ["sst2/teacher/seed1", "sst2/small/seed1", "sst2/small/seed2", "sst2/kd/seed1",
                   "sst2/kd/seed2", "sst2/small-int8/seed1", "sst2/small-int8/seed2"]
    teacher = jobs[0]
    assert teacher.is_teacher and teacher.after == () and teacher.teacher_key is None
    by_id = {j.id: j for j in jobs}
    for job in jobs[1:]:
        assert job.teacher_key == teacher.variants[0].keys[-1]
        assert job.after[0] == teacher.id
    # the chain's first step is the model "small" builds with the same seed: it waits for it
    chain = by_id["sst2/small-int8/seed1"]
    assert chain.variants[0].keys[0] == by_id["sst2/small/seed1"].variants[0].keys[-1]
    assert chain.after == (teacher.id, "sst2/small/seed1")
    assert by_id["sst2/kd/seed1"].after == (teacher.id,)
    # pure data: a job survives pickling (it is sent to worker processes and Ray tasks)
    import pickle
    assert pickle.loads(pickle.dumps(chain)) == chain


def test_an_entry_with_its_own_seeds_runs_once_per_own_seed(tmp_path, tiny_teacher, data_dir):
    from compressbench.plan import plan_task, resolve_task
    from compressbench.preflight import preflight

    methods = """  - {name: finetune, label: small, student: {layers: 1}}
  - {name: quant-dynamic, label: int8, seeds: [7]}
  - name: small-int8
    seeds: [2]
    chain:
      - {name: finetune, student: {layers: 1}}
      - {name: quant-dynamic}
"""
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, methods, seeds="[1, 2]")))
    assert [m.seeds_in(suite) for m in suite.methods] == [(1, 2), (7,), (2,)]
    pm = get_plugin_manager()
    prepared, _ = preflight(suite, pm, data_dir, str(tiny_teacher))
    jobs = plan_task(suite, pm, str(tiny_teacher), resolve_task(suite, "sst2", pm),
                     prepared["sst2"])
    by_id = {j.id: j for j in jobs}
    assert list(by_id) == ["sst2/teacher/seed1", "sst2/small/seed1", "sst2/small/seed2",
                           "sst2/int8/seed7", "sst2/small-int8/seed2"]
    # the chain's seed-2 student is the "small" entry's seed-2 model, built once
    assert by_id["sst2/small-int8/seed2"].after == ("sst2/teacher/seed1", "sst2/small/seed2")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_teacher):
    """The same suite, inline and with two local worker processes of one thread each."""
    import torch

    from tests.conftest import make_data_dir

    tmp = tmp_path_factory.mktemp("executors")
    data = make_data_dir(tmp / "data")
    suite = load_suite(suite_file(tmp, suite_text(tiny_teacher, METHODS, measure=MEASURE)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each local worker has: the same arithmetic
    try:
        inline = run_suite(suite, get_plugin_manager(), data, tmp / "inline", tmp / "c1")
    finally:
        torch.set_num_threads(threads)
    rec = Recorder()
    pm = get_plugin_manager()
    pm.register(rec, "recorder")
    local = run_suite(suite, pm, data, tmp / "local", tmp / "c2", executor="local", workers=2,
                      threads=1)
    return inline, local, rec, tmp


def test_local_workers_give_the_inline_records(two_runs):
    inline, local, _, tmp = two_runs
    assert all(r["status"] == "ok" for r in inline + local), [r.get("error") for r in local]
    a, b = ({r["job_id"]: r for r in rs} for rs in (inline, local))
    assert sorted(a) == sorted(b)
    for job_id in a:
        assert a[job_id]["key"] == b[job_id]["key"]
        assert a[job_id]["metrics"] == b[job_id]["metrics"], job_id  # exactly
        assert a[job_id]["model"]["parameters"] == b[job_id]["model"]["parameters"]
    assert len(results.read(tmp / "local")) == len(b)  # one record per job, none twice
    preds = sorted(p.name for p in (tmp / "local" / "predictions").iterdir())
    assert preds == sorted(p.name for p in (tmp / "inline" / "predictions").iterdir())


def test_worker_events_reach_the_hooks_in_order(two_runs):
    _, local, rec, _ = two_runs
    for record in local:
        calls = [c for c in rec.calls if len(c) > 1 and c[1] == record["job_id"]]
        kinds = [c[0] for c in calls]
        assert kinds[0] == "job_started" and kinds[-1] == "job_finished", kinds
        assert kinds.count("job_started") == kinds.count("job_finished") == 1
    small = [c[2] for c in rec.calls if c[0] == "job_event" and c[1] == "sst2/small/seed1"]
    assert "validation" in small
    chain = [c[2] for c in rec.calls if c[0] == "job_event" and c[1] == "sst2/small-int8/seed1"]
    assert "cache_hit" in chain  # it waited for "small" and reused its model


DIES = """
import os, signal
from pathlib import Path
from compressbench import Method, hookimpl

class Dies(Method):
    name = "dies-once"
    description = "kills its own process the first time it runs"

    def build(self, ctx, params):
        marker = Path(MARKER)
        if not marker.exists():
            marker.write_text("died")
            from compressbench.executors import local
            lock = getattr(local._EVENTS, "_wlock", None)
            if lock is not None:  # die at the worst moment: holding the queue's write lock
                lock.acquire()
            os.kill(os.getpid(), signal.SIGKILL)
        return ctx.load_input()

@hookimpl
def register_methods(register):
    register(Dies())
"""


def test_a_killed_worker_fails_its_job_only_and_a_rerun_retries_it(tmp_path, tiny_teacher,
                                                                   data_dir):
    plugin = tmp_path / "dies.py"
    plugin.write_text(f"MARKER = {str(tmp_path / 'died')!r}\n" + DIES)
    methods = ("  - {name: dies-once, label: dies}\n"
               "  - {name: finetune, label: small, student: {layers: 1}}\n")
    text = suite_text(tiny_teacher, methods).replace("version: 1\n",
                                                     "version: 1\nplugins: [dies.py]\n")
    suite = load_suite(suite_file(tmp_path, text))
    pm = get_plugin_manager([plugin])
    first = run_suite(suite, pm, data_dir, tmp_path / "run", tmp_path / "cache",
                      executor="local", workers=2, threads=1)
    status = {r["job_id"]: r["status"] for r in first}
    assert status == {"sst2/teacher/seed1": "ok", "sst2/dies/seed1": "failed",
                      "sst2/small/seed1": "ok"}
    died = next(r for r in first if r["job_id"] == "sst2/dies/seed1")
    assert "worker process died" in died["error"]
    again = run_suite(suite, pm, data_dir, tmp_path / "run", tmp_path / "cache",
                      executor="local", workers=2, threads=1)
    latest = results.latest(again)
    assert {k: r["status"] for k, r in latest.items()} == {k: "ok" for k in status}
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["job_id"] for x in lines].count("sst2/small/seed1") == 1


def test_unknown_executor_and_bad_worker_counts_are_clear_errors(tmp_path, tiny_teacher,
                                                                data_dir, capsys):
    from compressbench.cli import main
    from compressbench.errors import ConfigError

    suite = suite_file(tmp_path, suite_text(tiny_teacher))
    with pytest.raises(SystemExit):
        main(["run", str(suite), "--executor", "local", "--workers", "0"])
    assert "--workers: expected a whole number of at least 1, got '0'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--executor: unknown executor 'nope'.*Installed: "
                                          ".*inline.*local.*ray"):
        run_suite(load_suite(suite), get_plugin_manager(), data_dir, tmp_path / "run",
                  tmp_path / "cache", executor="nope")
    bad = suite_file(tmp_path, suite_text(tiny_teacher).replace(
        "version: 1\n", "version: 1\nexecution: {executor: locl}\n"), "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: execution.executor: unknown executor "
                                          r"'locl'. Did you mean: local\?"):
        run_suite(load_suite(bad), get_plugin_manager(), data_dir, tmp_path / "run",
                  tmp_path / "cache")
    ray_only = suite_file(tmp_path, suite_text(tiny_teacher).replace(
        "version: 1\n", "version: 1\nexecution: {executor: local, adress: auto}\n"), "r.yaml")
    with pytest.raises(ConfigError, match="the local executor takes no options"):
        run_suite(load_suite(ray_only), get_plugin_manager(), data_dir, tmp_path / "run",
                  tmp_path / "cache")


def test_the_suite_sets_the_executor_and_the_command_line_wins(tmp_path, tiny_teacher):
    from compressbench.runner import Runner

    text = suite_text(tiny_teacher).replace(
        "version: 1\n", "version: 1\nexecution: {executor: local, workers: 3, threads: 2}\n")
    suite = load_suite(suite_file(tmp_path, text))
    pm = get_plugin_manager()
    assert Runner(suite, pm).execution.workers == 3
    runner = Runner(suite, pm, executor="inline", threads=1)
    assert (runner.execution.executor, runner.execution.workers,
            runner.execution.threads) == ("inline", 3, 1)


def test_a_job_alone_trains_on_every_core(tmp_path, tiny_teacher, data_dir):
    """local without --threads: the teacher, which every other job waits for, runs alone and
    takes all the cores (the history records the threads each epoch ended with)."""
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs at least 2 cores")
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher)))
    records = run_suite(suite, get_plugin_manager(), data_dir, tmp_path / "run",
                        tmp_path / "cache", executor="local", workers=2)
    teacher = next(r for r in records if r["label"] == "teacher")
    assert teacher["training"][0]["runs"][0]["history"][-1]["threads"] == os.cpu_count()


# ---------------------------------------------------------------- Ray, on a 2-node local cluster
@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes in this machine, one CPU each; only the head can measure."""
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install "
                                      "'compressbench[ray]'")
    from ray.cluster_utils import Cluster

    from compressbench.executors.ray import MEASURE_RESOURCE

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {MEASURE_RESOURCE: 1},
        "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    yield cluster
    cluster.shutdown()


def test_ray_gives_the_inline_records_and_survives_a_killed_worker(two_runs, ray_cluster,
                                                                   tmp_path, tiny_teacher):
    """The suite on Ray (2 nodes), plus a job whose worker process is killed mid-job: Ray
    reruns it, the suite finishes, every job has one record, the others equal inline's."""
    from tests.conftest import make_data_dir

    inline, _, _, _ = two_runs
    plugin = tmp_path / "dies.py"
    plugin.write_text(f"MARKER = {str(tmp_path / 'died')!r}\n" + DIES)
    text = suite_text(tiny_teacher, METHODS + "  - {name: dies-once, label: dies}\n",
                      measure=MEASURE).replace("version: 1\n",
                                               "version: 1\nplugins: [dies.py]\n")
    suite = load_suite(suite_file(tmp_path, text))
    rec = Recorder()
    pm = get_plugin_manager([plugin])
    pm.register(rec, "recorder")
    data = make_data_dir(tmp_path / "data")
    records = run_suite(suite, pm, data, tmp_path / "run", tmp_path / "cache",
                        executor="ray", threads=1, address=ray_cluster.address)
    assert (tmp_path / "died").exists()  # the worker did die once
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    ids = [json.loads(x)["job_id"] for x in lines]
    assert sorted(ids) == sorted({r["job_id"] for r in inline} | {"sst2/dies/seed1"})
    ray_by_id = {r["job_id"]: r for r in records}
    for r in inline:
        other = ray_by_id[r["job_id"]]
        assert other["key"] == r["key"]
        assert other["metrics"] == r["metrics"], r["job_id"]  # exactly
        assert other["env"]["cpu"] and other["measure"]["backends"]["torch"]
    started = [c[1] for c in rec.calls if c[0] == "job_started"]
    assert sorted(started) == sorted(ids)  # the retried job is started once for the hooks
    small = [c[2] for c in rec.calls if c[0] == "job_event" and c[1] == "sst2/small/seed1"]
    assert "validation" in small


def test_ray_stops_before_training_when_no_node_can_measure(ray_cluster, tmp_path,
                                                            tiny_teacher, data_dir):
    import ray

    from compressbench.errors import ConfigError
    from compressbench.execute import Workspace
    from compressbench.executors.ray import RaySession as RayExecutor

    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, measure=MEASURE)))
    ws = Workspace(suite, str(tiny_teacher), tmp_path / "run", tmp_path / "cache")
    executor = RayExecutor(ws, lambda *a: None, threads=1, address=ray_cluster.address)
    with pytest.raises(ConfigError, match="compressbench_measure"):
        executor.check_cluster({"CPU": 2.0})
    with pytest.raises(ConfigError, match="gpus_per_job: 1, but the Ray cluster has 0 GPUs"):
        RayExecutor(ws, lambda *a: None, threads=1, address=ray_cluster.address,
                    gpus_per_job=1).__enter__()
    assert not ray.is_initialized()  # it let go of the cluster


def test_a_ray_measurement_reserves_its_whole_node():
    from compressbench.executors.ray import MEASURE_RESOURCE, measuring_node_cpus

    nodes = [{"Alive": True, "Resources": {"CPU": 16.0}},  # trains only
             {"Alive": True, "Resources": {"CPU": 8.0, MEASURE_RESOURCE: 1.0}},
             {"Alive": True, "Resources": {"CPU": 4.0, MEASURE_RESOURCE: 1.0}},
             {"Alive": False, "Resources": {"CPU": 2.0, MEASURE_RESOURCE: 1.0}}]
    assert measuring_node_cpus(nodes, 1) == 4.0
    assert measuring_node_cpus(nodes[:1], 1) == 1.0  # none measures: check_cluster says so


# ---------------------------------------------------------------- a plugin's executor
EXECUTOR_PLUGIN = '''
from dataclasses import dataclass

import compressbench
from compressbench import api

STARTED = []


@dataclass(frozen=True)
class Options:
    label: str = "none"


class Serial:
    def __init__(self, ws, on_event):
        self.ws, self.on_event, self.done = ws, on_event, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def capacity(self):
        return 1

    def pending(self):
        return len(self.done)

    def submit(self, job):
        self.on_event("started", job, "", {})
        worker = api.Worker(self.ws)
        self.done.append((job, api.execute(job, worker,
                                           lambda j, e, d: self.on_event("event", j, e, d))))

    def next_result(self):
        return self.done.pop(0)


class SerialExecutor(api.Executor):
    name = "serial-test"
    Options = Options

    def start(self, settings, ws, worker, on_event):
        STARTED.append(settings.options.label)
        return Serial(ws, on_event)


@compressbench.hookimpl
def register_executors(register):
    register(SerialExecutor())
'''


def test_a_plugin_file_registers_an_executor_with_options_of_its_own(tmp_path, tiny_teacher,
                                                                     data_dir):
    from compressbench.errors import ConfigError

    plugin = tmp_path / "serial.py"
    plugin.write_text(EXECUTOR_PLUGIN)
    text = suite_text(tiny_teacher).replace(
        "version: 1\n", f"version: 1\nplugins: [{plugin}]\n"
                        f"execution: {{executor: serial-test, label: mine}}\n")
    suite = load_suite(suite_file(tmp_path, text))
    pm = get_plugin_manager(suite.plugins)
    records = run_suite(suite, pm, data_dir, tmp_path / "run", tmp_path / "cache")
    assert records and all(r["status"] == "ok" for r in records)
    module = next(p for name, p in pm.list_name_plugin() if name.endswith("serial"))
    assert module.STARTED == ["mine"]  # its own option reached it, typed
    bad = suite_file(tmp_path, text.replace("label: mine", "labl: mine"), "bad.yaml")
    with pytest.raises(ConfigError, match="execution: unknown key 'labl'. Did you mean: label"):
        run_suite(load_suite(bad), get_plugin_manager(suite.plugins), data_dir,
                  tmp_path / "run2", tmp_path / "cache")


PLUGIN_METHOD = '''
from dataclasses import dataclass

import compressbench
from compressbench import api


@dataclass(frozen=True)
class Params:
    layers: int = 1
    note: str = "default"


class Mine(api.Method):
    name = "mine-resolved"
    Params = Params

    def build(self, ctx, params):
        raise NotImplementedError


@compressbench.hookimpl
def register_methods(register):
    register(Mine())
'''


def test_a_job_carries_its_steps_resolved_once_and_workers_do_not_parse_them_again(
        tmp_path, tiny_teacher, data_dir, monkeypatch):
    """The plan types a step's parameters once; a job sent to another process carries them
    (a --plugin file's Params class is typed again only on first use, after the worker loaded
    the file), and the worker runs them as they are, checking only the cache key."""
    import pickle
    import sys

    from compressbench import plan as P
    from compressbench import suite as S
    from compressbench.errors import CompressBenchError
    from compressbench.execute import Worker, Workspace, resolved
    from compressbench.preflight import preflight

    plugin = tmp_path / "mine.py"
    plugin.write_text(PLUGIN_METHOD)
    methods = "  - {name: mine-resolved, label: mine, layers: 2, note: given}\n"
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, methods)))
    pm = get_plugin_manager([plugin])
    prepared, _ = preflight(suite, pm, data_dir, str(tiny_teacher))
    jobs = P.plan_task(suite, pm, str(tiny_teacher), P.resolve_task(suite, "sst2", pm),
                       prepared["sst2"])
    job = jobs[1]
    step = job.variants[0].resolved[0]
    assert type(step.params).__name__ == "Params" and step.params.layers == 2
    assert step.params.note == "given" and step.key == job.variants[0].keys[0]
    # in transit: importable without the plugin file loaded, typed on first use
    wire = pickle.dumps(job)
    module = sys.modules.pop("compressbench_userplugin_mine")
    try:
        arrived = pickle.loads(wire)
    finally:
        sys.modules["compressbench_userplugin_mine"] = module
    assert arrived == job and arrived.variants[0].resolved[0].params == step.params
    # the worker: no parameter parsing, the plan's typed values, the key checked
    def no_parsing(*args, **kwargs):
        raise AssertionError("a worker parsed a step's parameters again")

    monkeypatch.setattr(P, "method_params", no_parsing)
    monkeypatch.setattr(S, "method_params", no_parsing)
    ws = Workspace(suite, str(tiny_teacher), tmp_path / "run", tmp_path / "cache", data_dir,
                   (str(plugin),))
    worker = Worker(ws, pm=pm)
    teacher = tmp_path / "cache" / "models" / job.teacher_key
    (got,) = resolved(arrived, arrived.variants[0], worker, teacher)
    assert got.params == step.params and got.key == step.key
    assert got.method is pm.methods.get("mine-resolved")
    # a worker whose plugin resolves to another model refuses the job
    monkeypatch.setattr(type(got.method), "version", "2", raising=False)
    with pytest.raises(CompressBenchError, match="other cache keys than the plan"):
        resolved(arrived, arrived.variants[0], worker, teacher)
