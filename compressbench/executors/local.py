"""The ``local`` executor: ``workers`` processes on this machine (a job's torch threads:
``threads``, or the cores shared among the jobs running, re-read at every training step); each
builds its own plugin manager, tokenizer and data once, from the suite's plugin list and files
(plugins registered in the runner's process by code are not seen there). Measurements never
overlap, and while one runs every other worker holds still at its next training step or
evaluation batch (:mod:`compressbench.quiet`: ``flock`` files the kernel releases when a
holder dies), so a model is timed on a machine as quiet as under ``inline``.
"""
from __future__ import annotations

import os
import queue

from compressbench.execute import Worker, Workspace, execute
from compressbench.executors.base import Executor, OnEvent, Settings, failed_record
from compressbench.plan import Job

# ---------------------------------------------------------------- local worker processes
_WORKER: Worker | None = None
_EVENTS = None
_ACTIVE = None


def _init_worker(ws: Workspace, events, active, fixed: int | None, parent: int) -> None:
    """In each worker process, once: die with the runner (``PR_SET_PDEATHSIG``: a ``kill -9``
    of ``compressbench run`` must not leave workers finishing jobs into the cache), no progress
    bars (the runner shows progress for every worker), its own plugin manager and data, the
    run's turnstile (:mod:`compressbench.quiet`: a model is timed while every other worker
    holds still), and the training loop's thread count: ``fixed``, else the cores
    shared among the jobs running now (``active``, a counter every worker updates), re-read at
    every step."""
    global _WORKER, _EVENTS, _ACTIVE
    from compressbench.measure import die_with_parent

    die_with_parent()
    if os.getppid() != parent:  # the runner died before the line above took effect
        os._exit(1)
    os.environ["TQDM_DISABLE"] = "1"  # read by the training loop at each call
    from compressbench import quiet
    from compressbench.logs import quiet_logs

    quiet_logs()
    _ACTIVE = active
    cores = os.cpu_count() or 1
    threads = (lambda: fixed) if fixed else (lambda: max(1, cores // max(1, active.value)))
    _EVENTS = events
    _WORKER = Worker(ws, threads=threads, turnstile=quiet.Turnstile(ws.run_dir))


def _run_in_worker(job: Job):
    """The job's events, then its record, through the one queue (so they arrive in order);
    the record is also the return value (the runner's fallback when the queue is lost)."""
    import torch

    def emit(j: Job, event: str, data: dict) -> None:
        _EVENTS.put(("event", j.id, event, data))

    with _ACTIVE.get_lock():
        _ACTIVE.value += 1
    torch.set_num_threads(_WORKER.threads())  # until training re-reads it every step
    turnstile = _WORKER.turnstile
    try:
        turnstile.hold()  # computing from here on: a measurement waits for a pause point
        _EVENTS.put(("started", job.id, "", {}))
        record = execute(job, _WORKER, emit)
        record = record.replace(quiet={**record.quiet, "paused_s": round(turnstile.paused_s, 2)})
    finally:
        turnstile.release()
        turnstile.paused_s = 0.0
        with _ACTIVE.get_lock():
            _ACTIVE.value -= 1
    _EVENTS.put(("finished", job.id, "", record))
    return record


class LocalSession:
    """``workers`` processes (spawned: a clean interpreter each). A job trains with
    ``threads`` torch threads, or by default with the cores shared among the jobs running at
    each training step: a job left alone (a task's teacher, which the task's other jobs wait
    for) takes every core as soon as the others finish."""

    def __init__(self, ws: Workspace, workers: int, threads: int | None, on_event: OnEvent):
        import multiprocessing

        self.ws, self.workers, self.threads, self.on_event = ws, workers, threads, on_event
        self.ctx = multiprocessing.get_context("spawn")
        self.events = self.active = None  # per pool: see new_pool
        self.running: dict[str, tuple] = {}  # job id -> (job, future)
        self.returned_at: dict[str, float] = {}  # job id -> when its future was seen done
        self.pool = None

    def __enter__(self):
        self.pool = self.new_pool()
        return self

    def new_pool(self):
        """A pool with a queue and a job counter of its own: a worker killed while it wrote
        to the queue (or held the counter) leaves that lock taken for good, which would
        block every other writer; the next pool starts clean."""
        from concurrent.futures import ProcessPoolExecutor

        self.events = self.ctx.Queue()
        self.active = self.ctx.Value("i", 0)  # jobs running in the workers now
        return ProcessPoolExecutor(self.workers, mp_context=self.ctx, initializer=_init_worker,
                                   initargs=(self.ws, self.events, self.active,
                                             self.threads, os.getpid()))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:  # Ctrl-C or an error: stop every worker now (finished
            self.kill()           # records are already appended)
        self.pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
        return False

    def kill(self) -> None:
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.kill()

    def capacity(self) -> int:
        return self.workers

    def pending(self) -> int:
        return len(self.running)

    def submit(self, job: Job) -> None:
        self.running[job.id] = (job, self.pool.submit(_run_in_worker, job))

    def next_result(self) -> tuple[Job, dict]:
        """The next job to finish, with its record; its events are forwarded on the way."""
        while True:
            try:
                tag, job_id, event, data = self.events.get(timeout=0.5)
            except queue.Empty:
                dead = self.dead() or self.returned()
                if dead is not None:
                    return dead
                continue
            if job_id not in self.running:  # its record came back another way (returned)
                continue
            job = self.running[job_id][0]
            if tag == "finished":
                del self.running[job_id]
                return job, data
            self.on_event(tag, job, event, data)

    def returned(self, grace_s: float = 60.0) -> tuple[Job, dict] | None:
        """A job whose future returned its record ``grace_s`` ago while the queue never
        brought it (a lost queue: belt and braces, as each pool has its own): that record."""
        import time

        now = time.monotonic()
        for job_id, (job, future) in list(self.running.items()):
            if future.done() and future.exception() is None and future.result() is not None:
                if now - self.returned_at.setdefault(job_id, now) >= grace_s:
                    del self.running[job_id]
                    return job, future.result()
        return None

    def dead(self) -> tuple[Job, dict] | None:
        """A job whose worker died (killed, out of memory): a failed record, and a new pool
        for the rest (a dead worker breaks the pool for every job in it)."""
        for job_id, (job, future) in list(self.running.items()):
            if future.done() and future.exception() is not None:
                del self.running[job_id]
                if getattr(self.pool, "_broken", False):
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = self.new_pool()
                    for other, _ in list(self.running.values()):  # lost with the old pool
                        self.submit(other)
                return job, failed_record(job, f"its worker process died "
                                               f"({type(future.exception()).__name__})")
        return None


class Local(Executor):
    name = "local"
    description = ("worker processes on this machine (workers: default the cores); a model "
                   "is timed while every other worker holds still")

    def start(self, settings: Settings, ws, worker, on_event: OnEvent) -> LocalSession:
        return LocalSession(ws, settings.workers or os.cpu_count() or 1, settings.threads,
                            on_event)
