"""The ``ray`` executor: each job is a Ray task on a cluster (or on a Ray started on this
machine), with the plan's dependencies, resources per job and retries when a worker dies.

- **Where things live.** Every node reads the suite's data, plugin files, the model cache and
  the run directory at the same paths: put them on a shared filesystem (NFS, a cloud volume).
  The runner, on the machine that ran ``compressbench run``, stays the only writer of
  ``results.jsonl``: a task returns its record, and the runner appends it once, so a retried
  job never gives two records.
- **Resources.** A job reserves ``threads`` CPUs (its torch threads) and ``gpus_per_job`` GPUs.
  A measurement is a task of its own that needs one unit of the custom resource
  ``compressbench_measure``: give it (``ray start --resources='{"compressbench_measure": 1}'``)
  to the nodes whose CPU you deploy on, one unit per node, so measurements never overlap on a
  node. A measurement reserves every CPU of its node (:func:`measuring_node_cpus`): it starts
  once no job computes there, and no job starts there until it ends, so a model is timed on a
  quiet node. The Ray this executor starts on a machine has one.
- **Failures.** A job whose worker process or node dies is rerun up to ``retries`` times (the
  half-built model it left is in a scratch folder, never in the cache); a method's own error
  is a failed record, as with the other executors, and is not retried.
- **Events** (progress, validation scores) reach the runner through a Ray queue, in the order
  each job sent them, before the job's record.
"""
from __future__ import annotations

import os
import platform
import queue
from dataclasses import dataclass
from pathlib import Path

from compressbench.errors import ConfigError
from compressbench.execute import Worker, Workspace, execute
from compressbench.executors.base import Executor, OnEvent, Settings, failed_record
from compressbench.plan import Job

#: the custom resource a node must have for models to be measured on it
MEASURE_RESOURCE = "compressbench_measure"

_WORKERS: dict[tuple, RayWorker] = {}  # per Ray worker process: one per workspace


class RayWorker(Worker):
    """A worker in a Ray worker process: its measurements run as tasks on a measuring node,
    and a record names the environment of the node that measured it."""

    measure_task = None  # the remote measurement function, set in the job's process
    last_env: dict | None = None

    @property
    def env(self) -> dict:
        return self.last_env or node_env(self.ws)

    def measure(self, folder: Path, features: list[dict], teacher: Path | None) -> dict:
        import ray

        if self.measure_task is None:  # already on the measuring node's task
            return super().measure(folder, features, teacher)
        measured, env = ray.get(self.measure_task.remote(self.ws, folder, features, teacher))
        self.last_env = env
        return measured


def measuring_node_cpus(nodes: list[dict], threads: int) -> float:
    """CPUs a measurement task reserves: all of a measuring node's (the smallest one's), so
    Ray starts it only when no job computes on that node and schedules none beside it (a job
    waiting in ``ray.get`` for its measurement has given its CPUs back meanwhile). A node to
    itself, as the local executor's turnstile gives a measurement the machine."""
    cpus = [n.get("Resources", {}).get("CPU", 0) for n in nodes
            if n.get("Alive") and n.get("Resources", {}).get(MEASURE_RESOURCE)]
    return max(float(threads), min(cpus)) if cpus else float(threads)


def node_env(ws: Workspace) -> dict:
    """The run's environment with this node's machine facts and package versions."""
    from compressbench.measure import cpu_model
    from compressbench.plugins import distribution_version

    return {**ws.env, "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "versions": {p: distribution_version(p) for p in ws.env.get("versions", {})}}


def worker_for(ws: Workspace) -> RayWorker:
    """This process's worker for the workspace (plugins, tokenizer and data made once)."""
    key = (str(ws.run_dir), ws.suite.sha256, str(ws.cache_dir), ws.plugin_files, ws.blocked)
    if key not in _WORKERS:
        os.environ["TQDM_DISABLE"] = "1"  # the runner shows the progress
        from compressbench.logs import quiet_logs

        quiet_logs()
        _WORKERS[key] = RayWorker(ws)
    return _WORKERS[key]


def run_job(ws: Workspace, job: Job, events, threads: int, measure_task) -> dict:
    """A Ray task: one job, with ``threads`` torch threads; its events go to ``events``."""
    import torch

    worker = worker_for(ws)
    worker.measure_task, worker.last_env = measure_task, None
    worker.threads = lambda: threads  # this task's reservation
    torch.set_num_threads(threads)

    def emit(j: Job, event: str, data: dict) -> None:
        events.put((j.id, event, data))

    events.put((job.id, "started", {}))
    return execute(job, worker, emit)


def measure_job(ws: Workspace, folder: Path, features: list[dict],
                teacher: Path | None) -> tuple[dict, dict]:
    """A Ray task on a measuring node: the measurement, and that node's environment."""
    worker = worker_for(ws)
    worker.measure_task = None
    return worker.measure(folder, features, teacher), node_env(ws)


class RaySession:
    """Jobs as Ray tasks. ``address``: None starts Ray on this machine (with the measurement
    resource); ``"auto"`` or ``"ray://HEAD:10001"`` joins a running cluster."""

    def __init__(self, ws: Workspace, on_event, workers: int | None = None,
                 threads: int | None = None, address: str | None = None,
                 gpus_per_job: float = 0.0, retries: int = 2):
        self.ws, self.on_event = ws, on_event
        self.workers, self.threads = workers, threads or 1
        self.address, self.gpus, self.retries = address, gpus_per_job, retries
        self.running: dict = {}  # object ref -> job
        self.jobs: dict[str, Job] = {}
        self.started: set[str] = set()
        self.owns_ray = False

    def __enter__(self):
        import ray
        from ray.util.queue import Queue

        if not ray.is_initialized():
            options = {"log_to_driver": False, "include_dashboard": False,
                       "configure_logging": False}
            if self.address is None:
                ray.init(resources={MEASURE_RESOURCE: 1}, **options)
            else:
                try:
                    ray.init(address=self.address, **options)
                except (ConnectionError, RuntimeError) as exc:
                    raise ConfigError(f"--ray-address {self.address}: cannot join the Ray "
                                      f"cluster ({exc}); start it with `ray start --head` "
                                      f"or leave the address out to run Ray on this "
                                      f"machine") from None
            self.owns_ray = True
        try:
            self.check_cluster(ray.cluster_resources())
        except ConfigError:
            self.close()
            raise
        self.events = Queue(actor_options={"num_cpus": 0})
        self.measure = ray.remote(measure_job).options(
            num_cpus=measuring_node_cpus(ray.nodes(), self.ws.suite.measure.threads),
            resources={MEASURE_RESOURCE: 1}, max_retries=self.retries)
        self.task = ray.remote(run_job).options(
            num_cpus=self.threads, num_gpus=self.gpus, max_retries=self.retries,
            retry_exceptions=False)
        return self

    def check_cluster(self, resources: dict) -> None:
        """Resources every job needs exist somewhere (or Ray would wait for them forever)."""
        if resources.get("CPU", 0) < self.threads:
            raise ConfigError(f"threads: {self.threads} CPUs per job, but no node of the Ray "
                              f"cluster has that many ({resources.get('CPU', 0):g} CPUs in "
                              f"all); lower execution.threads / --threads")
        if self.gpus and resources.get("GPU", 0) < self.gpus:
            raise ConfigError(f"gpus_per_job: {self.gpus:g}, but the Ray cluster has "
                              f"{resources.get('GPU', 0):g} GPUs; start GPU nodes or set "
                              f"execution.gpus_per_job: 0")
        if self.ws.suite.measure.enabled and not resources.get(MEASURE_RESOURCE):
            raise ConfigError(f"no node of the Ray cluster can measure models: start the "
                              f"nodes whose CPU you deploy on with --resources="
                              f"'{{\"{MEASURE_RESOURCE}\": 1}}' (or set measure.enabled: "
                              f"false)")

    def __exit__(self, exc_type, exc, tb):
        import ray

        if exc_type is not None:  # Ctrl-C or an error: stop every job (finished records are
            for ref in self.running:  # already appended)
                ray.cancel(ref, force=True)
        self.close()
        return False

    def close(self) -> None:
        import ray

        events = getattr(self, "events", None)
        if events is not None:
            ray.kill(events.actor)
        if self.owns_ray:
            ray.shutdown()

    def capacity(self) -> int:
        """``workers`` jobs at once; by default every ready job, queued by Ray until a node
        has the CPUs and GPUs it reserves."""
        return self.workers or 1_000_000

    def pending(self) -> int:
        return len(self.running)

    def submit(self, job: Job) -> None:
        ref = self.task.remote(self.ws, job, self.events, self.threads,
                               self.measure if self.ws.suite.measure.enabled else None)
        self.running[ref] = job
        self.jobs[job.id] = job

    def forward_events(self) -> None:
        while True:
            try:
                job_id, event, data = self.events.get_nowait()
            except queue.Empty:
                return
            job = self.jobs[job_id]
            if event == "started":
                if job_id not in self.started:  # a retried job starts again: once is enough
                    self.started.add(job_id)
                    self.on_event("started", job, "", {})
            else:
                self.on_event("event", job, event, data)

    def next_result(self) -> tuple[Job, dict]:
        import ray

        while True:
            self.forward_events()
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=0.5)
            if not ready:
                continue
            self.forward_events()  # the job's last events were queued before it returned
            job = self.running.pop(ready[0])
            try:
                return job, ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                return job, failed_record(job, f"its Ray task failed after {self.retries} "
                                               f"retries ({type(exc).__name__}: {first})")


@dataclass(frozen=True)
class Options:
    """The ``ray`` executor's own keys under ``execution:``."""

    address: str | None = None  # None starts Ray on this machine; "auto" joins the cluster
    #                             this machine is part of; or "ray://HEAD:10001"
    gpus_per_job: float = 0.0  # GPUs a job reserves (set 1 with training.device cuda)
    retries: int = 2  # reruns of a job whose worker process or node died

    def __post_init__(self):
        import math

        if not 0 <= self.gpus_per_job or not math.isfinite(self.gpus_per_job):
            raise ValueError(f"gpus_per_job: {self.gpus_per_job} must be 0 or more")
        if self.retries < 0:
            raise ValueError(f"retries: {self.retries} must be at least 0")


class Ray(Executor):
    name = "ray"
    description = ("Ray tasks on a cluster (workers: jobs at once; threads: CPUs a job "
                   "reserves, default 1)")
    Options = Options
    on_this_machine = False  # jobs train on the cluster's nodes and are measured there

    def missing(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            return ("needs Ray, which is not installed: pip install 'compressbench[ray]' "
                    "(on every node)")
        return None

    def notes(self, settings: Settings) -> list[str]:
        return ["execution: ray: the cluster (its CPUs, GPUs and measuring nodes) is checked "
                "when `run` joins it"]

    def start(self, settings: Settings, ws, worker, on_event: OnEvent) -> RaySession:
        o = settings.options or Options()
        return RaySession(ws, on_event, settings.workers, settings.threads, o.address,
                          o.gpus_per_job, o.retries)
