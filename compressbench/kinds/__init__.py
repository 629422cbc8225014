"""Task kinds: what a task's labels are, and everything that follows from it.

A :class:`TaskKind` owns, for its kind of task: the model head and how its logits are read, the
task loss and the soft-target loss, prediction and scoring, the agreement measure between two
runtimes' outputs, the ONNX output axes, the bootstrap statistic and its resampling unit, the
error analysis, and its data checks. The rest of compressbench asks the kind; it never compares
the kind's name. The built-in kinds (``classification``, ``regression``, ``token``) are one file
each in this package and are registered through the ``register_task_kinds`` hook, exactly like a
third-party kind (see docs/plugins.md, "A task kind").

Records, saved models and reference files store the kind's *name*; :func:`get` turns a name
back into the kind.
"""
from __future__ import annotations

from compressbench.hookspecs import hookimpl
from compressbench.kinds.base import (  # noqa: F401 (the package's names)
    _SEEN,
    TaskKind,
    masked_mean,
    max_diff,
    pair_text,
)
from compressbench.kinds.classification import Classification
from compressbench.kinds.regression import Regression
from compressbench.kinds.token import TokenClassification

# --------------------------------------------------------------------------- lookup

#: the built-in kinds, one instance each
BUILTIN: dict[str, TaskKind] = {k.name: k for k in (Classification(), Regression(),
                                                    TokenClassification())}


def get(kind: str | TaskKind, where: str = "") -> TaskKind:
    """The task kind ``kind`` names (a kind is returned as it is): a built-in one, one a plugin
    manager of this process registered, or one an installed plugin registers."""
    if isinstance(kind, TaskKind):
        return kind
    found = _SEEN.get(kind) or BUILTIN.get(kind)
    if found is not None:
        return found
    from compressbench.plugins import get_plugin_manager
    return get_plugin_manager().task_kinds.get(str(kind), where)


task_kind = get  # the public name (compressbench.api.task_kind)


@hookimpl
def register_task_kinds(register) -> None:
    for kind in BUILTIN.values():
        register(kind)
