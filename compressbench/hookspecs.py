"""Every compressbench hook, in the order the lifecycle calls them.

A plugin is any module or object with functions marked ``@compressbench.hookimpl`` whose names
match the specs below. Registration hooks receive a ``register`` callback instead of returning
values, so one plugin can register several things and a duplicate name is reported with both
plugins named (see ``compressbench.plugins.Registry``).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("compressbench")


@hookspec
def register_task_kinds(register: Callable[[Any], None]) -> None:
    """Register task kinds: what a task's labels are (a class, a score, a tag per word, ...)
    and everything that follows from it (head, losses, prediction, scoring, agreement between
    runtimes, ONNX axes, bootstrap statistic, error analysis, data checks).

    Called once per plugin manager, the first time a kind is looked up by name.

    :param register: call ``register(kind)`` with a :class:`compressbench.kinds.TaskKind`
        (``compressbench.api.TaskKind``) for each kind; ``kind.name`` is the name tasks,
        records and saved models use.
    """


@hookspec
def register_tasks(register: Callable[[Any], None]) -> None:
    """Register tasks (datasets with a metric) that suites can name in ``tasks:``.

    Called once per plugin manager, the first time a task is looked up.

    :param register: call ``register(task)`` with a :class:`compressbench.tasks.Task` for each
        task; ``task.name`` is the name used in YAML, results and reports.
    """


@hookspec
def register_methods(register: Callable[[Any], None]) -> None:
    """Register compression methods that suites can name in ``methods:``.

    Called once per plugin manager, the first time a method is looked up.

    :param register: call ``register(method)`` with a :class:`compressbench.Method` instance for
        each method; ``method.name`` is the name used in YAML, results and reports.
    """


@hookspec
def register_reporters(register: Callable[[Any], None]) -> None:
    """Register report formats for ``compressbench report --format NAME``.

    :param register: call ``register(reporter)`` with a :class:`compressbench.report.Reporter`;
        ``reporter.name`` is the value given to ``--format``.
    """


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register runtimes that models are measured on (``measure: {backends: [NAME, ...]}``).

    :param register: call ``register(backend)`` with an object following the protocol of
        :mod:`compressbench.measure.backend` (``name``, ``missing()``, ``prepare(...)``,
        ``load(...)``); ``backend.name`` is the name used in YAML, results and reports.
    """


@hookspec
def register_executors(register: Callable[[Any], None]) -> None:
    """Register executors: who runs a suite's jobs (``execution: {executor: NAME}``,
    ``--executor NAME``).

    Called once per plugin manager, the first time an executor is looked up.

    :param register: call ``register(executor)`` with a
        :class:`compressbench.executors.Executor` (``compressbench.api.Executor``): ``name``,
        its ``Options`` dataclass (its own keys under ``execution:``), ``missing()`` and
        ``start(settings, ws, worker, on_event)``, which returns the session the runner
        submits jobs to.
    """


@hookspec
def register_augmenters(register: Callable[[Any], None]) -> None:
    """Register augmentation rules for transfer sets (``transfer: {augment: {rules: NAME}}``).

    Called once per plugin manager, the first time an augmenter is looked up.

    :param register: call ``register(augmenter)`` with an object following the protocol of
        :mod:`compressbench.augment` (``name``, ``Options``, ``check(options, data_dir,
        where)``, ``augment(examples, kind, options, copies, seed, ctx)``).
    """


@hookspec
def run_started(suite: Any, run_dir: Path) -> None:
    """Called once when ``run_suite`` starts, after the suite and its data passed validation.

    :param suite: the :class:`compressbench.suite.Suite` being run.
    :param run_dir: the directory results are written to.
    """


@hookspec
def job_started(job: Any) -> None:
    """Called before a job (one task x method x seed) builds or loads its model.

    Not called for jobs skipped because the run directory already holds their result.

    :param job: the :class:`compressbench.plan.Job`; ``job.id`` is stable across runs.

    The lifecycle hooks (``run_started``, ``job_started``, ``job_event``, ``job_finished``,
    ``run_finished``) are always called in the runner's process, whichever executor runs the
    job: events a job emits in a worker process are forwarded there, in order, before its
    ``job_finished``.
    """


@hookspec
def job_event(job: Any, event: str, data: dict) -> None:
    """Progress reported while a job runs: training steps, validation scores, cache hits.

    Methods and the training loop report through this hook instead of logging frameworks, so
    a plugin can forward events to TensorBoard, W&B or a log file.

    :param job: the running job.
    :param event: ``"train_step"`` (data: step, loss, lr, epoch), ``"validation"`` (epoch,
        metric, value, best), ``"cache_hit"`` (key, path), ``"cache_damaged"`` (path, problem: a
        cached model that no longer matched its manifest and is rebuilt), or a method-defined
        name.
    :param data: JSON-serialisable details.
    """


@hookspec
def job_finished(job: Any, record: Any) -> None:
    """Called after a job's result record has been written (status ``ok`` or ``failed``).

    :param job: the finished job.
    :param record: the :class:`compressbench.record.Record` appended to ``results.jsonl``
        (``record.to_dict()`` is the line written).
    """


@hookspec
def run_progress(done: int, total: int, failed: int, running: int, skipped: int,
                 eta_s: float | None) -> None:
    """The suite's progress: called once before the first job is handed out and after each
    job finishes, in the runner's process, under every executor.

    :param done: jobs of this run finished so far (ok or failed), the ``skipped`` ones included.
    :param total: the suite's jobs.
    :param failed: jobs of this run that failed.
    :param running: jobs handed to the executor and not finished.
    :param skipped: jobs whose result the run directory already held (resumed, not re-run).
    :param eta_s: seconds until the last job ends, from the wall time the jobs finished in
        this run took (their mean, times the jobs left, over the executor's capacity); None
        before any has finished.
    """


@hookspec
def run_finished(run_dir: Path, records: list[Any]) -> None:
    """Called once when every job of the suite has run (not on Ctrl-C).

    :param run_dir: the run directory.
    :param records: every record of the run directory, this run's and earlier ones, as
        :class:`compressbench.record.Record` objects.
    """


hookimpl = pluggy.HookimplMarker("compressbench")
"""Marks a plugin's hook implementation; exported as ``compressbench.hookimpl``."""
