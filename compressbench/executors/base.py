"""The executor protocol (see :mod:`compressbench.executors`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from compressbench import schema
from compressbench.errors import ConfigError
from compressbench.plan import Job
from compressbench.record import Record

#: on_event(tag, job, event, data): tag "started" (event and data empty) or "event"
OnEvent = Callable[[str, Job, str, dict], None]


@dataclass(frozen=True)
class Settings:
    """What an executor is started with: the common settings, and its own options."""

    workers: int | None = None  # jobs at once (its meaning per executor)
    threads: int | None = None  # torch threads per job
    options: Any = None  # an instance of the executor's ``Options`` (None if it has none)


class Session(Protocol):
    """A started executor (a context manager)."""

    def capacity(self) -> int: ...  # jobs it takes at once
    def pending(self) -> int: ...  # jobs submitted and not yet returned
    def submit(self, job: Job) -> None: ...
    def next_result(self) -> tuple[Job, dict]: ...  # the next finished job and its record


class Executor:
    """The base of an executor plugin (override what differs)."""

    name: str = ""
    description: str = ""
    #: a dataclass of this executor's own keys under ``execution:`` (None: it has none)
    Options: type | None = None
    #: jobs run in the runner's process (the runner lends it its worker, with the data
    #: already prepared)
    in_process: bool = False
    #: jobs train on this machine: the devices a suite trains on are checked here, and the
    #: latency control is re-timed here at the end
    on_this_machine: bool = True

    def missing(self) -> str | None:
        """Why this executor cannot run here (a package to install), or None."""
        return None

    def notes(self, settings: Settings) -> list[str]:
        """What ``validate`` should say about these settings."""
        return []

    def start(self, settings: Settings, ws, worker, on_event: OnEvent) -> Session:
        """A session (a context manager) that runs the run's jobs: ``capacity()``,
        ``pending()``, ``submit(job)``, ``next_result() -> (job, record)``. ``worker``: the
        runner's own, for an executor that runs jobs in its process (``in_process``)."""
        raise NotImplementedError


def failed_record(job: Job, why: str) -> Record:
    """The record of a job that died outside its own code (its process or its node)."""
    return Record(job_id=job.id, key=job.key, task=job.task, label=job.label, seed=job.seed,
                  status="failed", error=f"{why}; run again to retry it")


def resolve(execution, pm, where: str = "execution",
            name_where: str | None = None) -> tuple[Executor, Settings]:
    """The executor ``execution.executor`` names and its settings, its options checked
    against its ``Options`` (unknown keys are errors with a suggestion); a ConfigError naming
    ``where`` (``name_where`` for the name, e.g. ``--executor``) otherwise."""
    name_where = name_where or f"{where}.executor"
    executor = pm.executors.get(execution.executor, name_where)
    why = executor.missing()
    if why:
        raise ConfigError(f"{name_where} {executor.name}: {why}")
    options = dict(execution.options)
    if executor.Options is None:
        if options:
            raise ConfigError(f"{where}: {sorted(options)[0]!r}: the {executor.name} executor "
                              f"takes no options (only workers, threads)")
        built = None
    else:
        built = schema.build(executor.Options, options, where)
    return executor, Settings(execution.workers, execution.threads, built)
