"""compressbench: which way of making a BERT model smaller and faster costs the least accuracy.

Users: ``run`` (a suite, with overrides, to a :class:`Results`), ``load`` (a run directory's
``Results``: ``to_dataframe()``, ``best()``, ``report()``); see :mod:`compressbench.session`.
Plugin authors: everything a method needs is in :mod:`compressbench.api` (the built-ins use
nothing else). Also public here: ``hookimpl`` (mark plugin hooks), ``Method`` and ``Context``
(write a method), ``load_suite`` / ``run_suite`` (run from Python), ``get_plugin_manager``,
``load_model`` (any model a run saved or exported, running no code from its folder), and
``rebuild_step`` / ``built_by`` / ``rebuild_with`` (how a method says to rebuild a model a
config cannot describe). Heavy modules (torch) are imported only when one of their names is used.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from compressbench.errors import CompressBenchError, ConfigError, DataError, PluginError
from compressbench.hookspecs import hookimpl

__version__ = "0.2.0"

_LAZY = {
    "Method": "compressbench.method", "Context": "compressbench.method",
    "StudentSpec": "compressbench.models", "Task": "compressbench.tasks",
    "Example": "compressbench.tasks", "load_suite": "compressbench.suite",
    "run_suite": "compressbench.runner", "get_plugin_manager": "compressbench.plugins",
    "load_model": "compressbench.models", "rebuild_step": "compressbench.models",
    "built_by": "compressbench.models", "rebuild_with": "compressbench.models",
    "run": "compressbench.session", "load": "compressbench.session",
    "Results": "compressbench.session",
}

__all__ = ["hookimpl", "CompressBenchError", "ConfigError", "DataError", "PluginError",
           "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'compressbench' has no attribute {name!r}")
