"""Executors: who runs the plan's jobs. Each is a plugin, one file each, registered through
``register_executors`` like a third party's:

- ``inline`` (:mod:`.inline`): one job at a time in this process (the default);
- ``local`` (:mod:`.local`): worker processes on this machine, measurements quiet;
- ``ray`` (:mod:`.ray`): jobs as Ray tasks on a cluster.

An executor plugin (:class:`Executor`) has a ``name`` (``execution.executor`` in a suite,
``--executor``), its own typed ``Options`` (the keys of ``execution:`` other than
``executor``, ``workers`` and ``threads``), and ``start(settings, ws, worker, on_event)``,
which returns a :class:`Session`: the runner hands it the jobs whose dependencies are done
(``submit``, up to ``capacity()`` at a time) and takes records back as jobs finish
(``next_result``); it appends every record itself. Events from the jobs (``started``, and each
``job_event``) reach ``on_event(tag, job, event, data)`` in the runner's process, in the order
the job sent them, before its record. A job runs through :func:`compressbench.execute.execute`
with a :class:`~compressbench.execute.Worker` that carries its settings (torch threads, the
quiet turnstile): an executor passes them in, it never sets another module's globals.
"""
from __future__ import annotations

from compressbench.executors.base import (  # noqa: F401 (the package's names)
    Executor,
    OnEvent,
    Session,
    Settings,
    failed_record,
    resolve,
)
from compressbench.executors.inline import Inline
from compressbench.executors.local import Local
from compressbench.executors.ray import Ray
from compressbench.hookspecs import hookimpl


@hookimpl
def register_executors(register) -> None:
    for executor in (Inline(), Local(), Ray()):
        register(executor)
