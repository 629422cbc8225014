"""The public API for plugin authors: everything a method needs from the core, in one module.

```python
from compressbench import api

class MyMethod(api.Method):
    name = "my-method"
    def build(self, ctx: api.Context, params):
        ...

@api.hookimpl
def register_methods(register):
    register(MyMethod())
```

The built-in methods import nothing else from compressbench (a test checks it), so whatever
they can do, a third-party method can. The names below are kept stable; every other module of
the package is internal and may change between releases. ``docs/plugins.md`` shows each in
use. Heavy modules (torch, transformers) are imported when a name that needs them is first
used, so ``from compressbench import api`` is cheap.

``SECTIONS`` below lists the names by topic. ``docs/api.md``, the reference, is generated from
it and the docstrings (``python -m compressbench.apidoc > docs/api.md``; a test fails when it
is out of date, and runs its examples). The toolkits ``onnxrt`` (ONNX Runtime) and
``openvino`` are modules, imported on first use (they need the ``onnx`` / ``openvino``
extras).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

#: the public names by topic, each with the module it lives in (``docs/api.md`` is generated
#: from this table and the docstrings: ``python -m compressbench.apidoc``)
SECTIONS: tuple[tuple[str, str, dict[str, tuple[str, ...]]], ...] = (
    ("Writing a plugin",
     "A plugin module implements hooks (``hookimpl``); a method subclasses ``Method`` and "
     "builds its model from the ``Context`` it gets. ``get_plugin_manager`` loads plugins as a "
     "run does (for a plugin's own tests); ``source_digest`` is the digest of a plugin's "
     "source that goes into its models' cache keys.",
     {
        "compressbench.hookspecs": ("hookimpl",),
        "compressbench.errors": ("ConfigError", "CompressBenchError"),
        "compressbench.method": ("Method", "Context"),
        "compressbench.tasks": ("Task", "Example"),
        "compressbench.plugins": ("get_plugin_manager", "source_digest")}),
    ("Task kinds",
     "A task's ``task.kind`` is its kind: ask it (``kind.task_loss``, ``kind.soft_loss``, "
     "``kind.per_token``, ...), never compare its name. Subclass ``TaskKind`` for a new kind "
     "and register it with ``register_task_kinds``.",
     {
        "compressbench.kinds": ("TaskKind", "task_kind"),
        "compressbench.kinds.analysis": ("ClassStats",)}),
    ("Models and students",
     "Students built from the teacher (fewer layers, or narrower with ``shrink: truncate``), "
     "saved and loaded as data, never pickles; ``rebuild_step``, ``built_by`` and "
     "``rebuild_with`` say how to rebuild a model its config cannot describe.",
     {
        "compressbench.models": ("StudentSpec", "make_student", "half_student", "layer_map",
                                 "float32", "load_model", "save_model", "is_saved",
                                 "resolve_model_ref", "auto_class", "quiet_transformers",
                                 "rebuild_step", "built_by", "rebuild_with")}),
    ("Running a model",
     "Batches, the inputs a model accepts, its logits and the task loss.",
     {
        "compressbench.models": ("forward_kwargs", "logits_of"),
        "compressbench.training": ("task_loss", "supervised_loss", "to_device", "device_of"),
        "compressbench.kinds.token": ("IGNORE",),
        "compressbench.data": ("encode", "collate", "length_grouped_batches"),
        "compressbench.batching": ("n_tokens",)}),
    ("Losses",
     "Distillation losses with masks for padding and unlabelled tokens; each dispatches on the "
     "task kind.",
     {
        "compressbench.losses": ("soft_loss", "soft_cross_entropy", "kd_loss", "gold_loss",
                                 "masked_mean", "masked_mse", "label_mask", "pair_mask",
                                 "attention_kl", "relation")}),
    ("Inside a model",
     "Hidden states, attention scores and probabilities, queries, keys and values per layer of "
     "a BERT or DistilBERT model, on each forward pass.",
     {"compressbench.capture": ("capture", "Captured")}),
    ("Transfer sets and augmentation",
     "``ctx.transfer_set()`` gives the labelled features plus the suite's transfer set "
     "labelled by the teacher (set ``uses_transfer = True`` on the method); augmenters are "
     "plugins (``register_augmenters``); Tang et al.'s rules are these.",
     {
        "compressbench.augment": ("Lexicon", "lexicon_path", "tang_copies", "TangOptions")}),
    ("Backends and runtimes",
     "A backend runs a saved model on one runtime for measurement (``Backend``, ``Session``: "
     "the protocols; ``SavedModel``: what ``prepare`` and ``load`` get; raise ``Unsupported`` "
     "for a model it cannot run). A method whose model exists for one runtime only returns "
     "``onnxrt.OnnxModel`` or ``openvino.OpenVINOModel``.",
     {
        "compressbench.measure.backend": ("Backend", "Session", "SavedModel", "Unsupported"),
        "compressbench.measure.protocol": ("as_batch",),
        "compressbench.runtimes.onnxruntime": ("export_onnx",)}),
    ("Executors",
     "An executor decides who runs a suite's jobs; ``execute`` runs one job in a process with "
     "a ``Worker``.",
     {
        "compressbench.executors": ("Executor", "Settings", "failed_record"),
        "compressbench.execute": ("Worker", "execute"),
        "compressbench.quiet": ("Turnstile",)}),
    ("Results",
     "One job's result as hooks get it and ``results.jsonl`` holds it.",
     {"compressbench.record": ("Record", "BackendResult")}),
)
_LAZY = {name: module for _, _, modules in SECTIONS for module, names in modules.items()
         for name in names}
_MODULES = {"onnxrt": "compressbench.runtimes.onnxruntime",
            "openvino": "compressbench.runtimes.openvino"}

__all__ = [*_LAZY, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _MODULES:
        return import_module(_MODULES[name])
    raise AttributeError(f"module 'compressbench.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
