"""compressbench-isolated: an executor from outside the core, as a plugin package.

``isolated`` runs every job in a fresh process of its own (``concurrent.futures``' process pool
with ``max_tasks_per_child=1``): nothing a job leaves behind (memory a method leaks, a global
it sets, a library's cache, a crashed native extension) reaches the next job. ``workers`` jobs
run at once (default 1); their measurements stay quiet through the run's turnstile, as under
``local``. Its own option, ``start_method``: ``spawn`` (default, a clean interpreter) or
``forkserver``.

    execution: {executor: isolated, workers: 2, start_method: spawn}

It imports only ``compressbench.api``.
"""
from __future__ import annotations

import os
import queue
from dataclasses import dataclass

from compressbench import api

__version__ = "0.1.0"

_EVENTS = None


def _start_child(events) -> None:
    """In each fresh process: the queue the job's events go through, no progress bars."""
    global _EVENTS
    _EVENTS = events
    os.environ["TQDM_DISABLE"] = "1"


def _run(ws, job, threads: int | None) -> None:
    """One job in this fresh process: its events, then its record, through the queue."""
    import torch

    worker = api.Worker(ws, threads=(lambda: threads) if threads else None,
                        turnstile=api.Turnstile(ws.run_dir))
    if threads:
        torch.set_num_threads(threads)
    worker.turnstile.hold()  # computing: a measurement elsewhere waits for a pause point
    try:
        _EVENTS.put(("started", job.id, "", {}))
        record = api.execute(job, worker,
                             lambda j, event, data: _EVENTS.put(("event", j.id, event, data)))
        record = record.replace(quiet={**record.quiet,
                                       "paused_s": round(worker.turnstile.paused_s, 2)})
    finally:
        worker.turnstile.release()
    _EVENTS.put(("finished", job.id, "", record))


class IsolatedSession:
    def __init__(self, ws, workers: int, threads: int | None, on_event, start_method: str):
        import multiprocessing

        self.ws, self.workers, self.threads, self.on_event = ws, workers, threads, on_event
        self.ctx = multiprocessing.get_context(start_method)
        self.events = self.ctx.Queue()
        self.running: dict[str, tuple] = {}  # job id -> (job, future)

    def __enter__(self):
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.workers, mp_context=self.ctx,
                                        initializer=_start_child, initargs=(self.events,),
                                        max_tasks_per_child=1)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
        return False

    def capacity(self) -> int:
        return self.workers

    def pending(self) -> int:
        return len(self.running)

    def submit(self, job) -> None:
        self.running[job.id] = (job, self.pool.submit(_run, self.ws, job, self.threads))

    def next_result(self):
        while True:
            try:
                tag, job_id, event, data = self.events.get(timeout=0.5)
            except queue.Empty:
                for job_id, (job, future) in list(self.running.items()):
                    if future.done() and future.exception() is not None:  # its process died
                        del self.running[job_id]
                        return job, api.failed_record(
                            job, f"its process died ({type(future.exception()).__name__})")
                continue
            job = self.running[job_id][0]
            if tag == "finished":
                del self.running[job_id]
                return job, data
            self.on_event(tag, job, event, data)


@dataclass(frozen=True)
class Options:
    """The ``isolated`` executor's own key under ``execution:``."""

    start_method: str = "spawn"  # or "forkserver" (faster starts, on Linux)

    def __post_init__(self):
        if self.start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method: {self.start_method!r} is not spawn or "
                             f"forkserver (fork would copy the runner's threads and state)")


class Isolated(api.Executor):
    name = "isolated"
    description = "every job in a fresh process of its own (workers at once, default 1)"
    Options = Options

    def start(self, settings, ws, worker, on_event) -> IsolatedSession:
        o = settings.options or Options()
        return IsolatedSession(ws, settings.workers or 1, settings.threads, on_event,
                               o.start_method)


@api.hookimpl
def register_executors(register):
    register(Isolated())
