"""The ``inline`` executor: each job runs in the runner's process when it is submitted (the
default; nothing else computes while a model is timed)."""
from __future__ import annotations

from compressbench.execute import Worker, execute
from compressbench.executors.base import Executor, OnEvent, Settings
from compressbench.plan import Job


class InlineSession:
    def __init__(self, worker: Worker, on_event: OnEvent):
        self.worker, self.on_event = worker, on_event
        self.done: list[tuple[Job, dict]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def capacity(self) -> int:
        return 1

    def pending(self) -> int:
        return len(self.done)

    def submit(self, job: Job) -> None:
        self.on_event("started", job, "", {})
        record = execute(job, self.worker,
                         lambda j, event, data: self.on_event("event", j, event, data))
        self.done.append((job, record))

    def next_result(self) -> tuple[Job, dict]:
        return self.done.pop(0)


class Inline(Executor):
    name = "inline"
    description = "one job at a time in this process"
    in_process = True

    def start(self, settings: Settings, ws, worker, on_event: OnEvent) -> InlineSession:
        return InlineSession(worker or Worker(ws), on_event)
