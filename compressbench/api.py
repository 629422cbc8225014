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

- **Writing a plugin**: ``hookimpl``, ``Method``, ``Context`` (what ``build`` gets: data,
  features, the teacher, the student factory, ``train``, ``device``, ``emit``), ``Task``,
  ``Example``, ``ConfigError``, ``CompressBenchError``.
- **Task kinds**: ``TaskKind`` (subclass it for a new kind, register it with
  ``register_task_kinds``) and ``task_kind(name)`` (the kind a name stands for). A task's
  ``task.kind`` is its kind: ask it (``kind.task_loss``, ``kind.soft_loss``,
  ``kind.per_token``, ``kind.hard_label``, ...), never compare its name. ``ClassStats``: one
  row of the report's per-class error analysis.
- **Executors**: ``Executor`` (subclass it, register it with ``register_executors``),
  ``Settings`` (what ``start`` gets), ``Worker`` and ``execute`` (run one job in a process:
  ``execute(job, Worker(ws, threads=..., turnstile=...), emit) -> Record``),
  ``failed_record`` (the record of a job whose process died), ``Turnstile`` (quiet measurements when jobs run
  side by side on one machine: give each job's worker one).
- **Results**: ``Record`` (one job's result, as hooks get it and ``results.jsonl`` holds it:
  ``Record.from_dict`` / ``to_dict``; field names are the JSON keys) and ``BackendResult``
  (``record.backend(name)``: latency_ms, cpu_ms, examples_per_s, peak_rss_mb, paired, ...).
- **Models**: ``StudentSpec``, ``make_student``, ``half_student``, ``layer_map``, ``float32``,
  ``load_model``, ``save_model``, ``is_saved`` (a model a method caches itself, e.g. in
  ``ctx.shared_dir``), ``resolve_model_ref``, ``auto_class``, ``quiet_transformers``; saving a model
  a config cannot describe: ``rebuild_step``, ``built_by``, ``rebuild_with``.
- **Running a model**: ``forward_kwargs`` (the inputs the model accepts), ``logits_of``,
  ``task_loss``, ``supervised_loss``, ``IGNORE`` (unlabelled token positions), ``encode``,
  ``collate``, ``length_grouped_batches``, ``n_tokens`` (a feature's length: its longest
  token row), ``to_device``, ``device_of``.
- **Losses** (:mod:`compressbench.losses`): ``soft_loss``, ``soft_cross_entropy``,
  ``kd_loss``, ``gold_loss`` (the task loss on the rows with a gold label: a transfer set's
  rows have only the teacher's), ``masked_mean``, ``masked_mse``, ``label_mask``,
  ``pair_mask``, ``attention_kl``, ``relation``.
- **Transfer sets**: ``ctx.transfer_set()`` (labelled features plus the suite's transfer set,
  labelled by the teacher; set ``uses_transfer = True`` on the method); augmenters are plugins
  (``register_augmenters``); Tang et al.'s rules: ``tang_copies``, ``TangOptions``,
  ``Lexicon``, ``lexicon_path``. A loss function may return ``(loss, {"term": value})``: the
  terms are shown in the progress bar and kept, per epoch, in the record's training history.
- **Inside a model** (:mod:`compressbench.capture`): ``capture(model, "hidden", "qkv")``:
  hidden states, attention scores and probabilities, queries, keys and values per layer, for
  BERT and DistilBERT.
- **Runtimes** (methods whose model exists only for one runtime, e.g. int8 ONNX):
  ``Unsupported``, ``as_batch``, ``export_onnx``, and the toolkits ``onnxrt`` (ONNX Runtime)
  and ``openvino``, imported on first use (they need the ``onnx`` / ``openvino`` extras).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from compressbench.errors import CompressBenchError, ConfigError
from compressbench.hookspecs import hookimpl

_NAMES = {
    "compressbench.method": ("Method", "Context"),
    "compressbench.tasks": ("Task", "Example"),
    "compressbench.kinds": ("TaskKind", "task_kind"),
    "compressbench.kinds.analysis": ("ClassStats",),
    "compressbench.executors": ("Executor", "Settings", "failed_record"),
    "compressbench.record": ("Record", "BackendResult"),
    "compressbench.execute": ("Worker", "execute"),
    "compressbench.quiet": ("Turnstile",),
    "compressbench.models": ("StudentSpec", "make_student", "half_student", "layer_map", "float32",
                             "load_model", "resolve_model_ref", "auto_class",
                             "quiet_transformers", "rebuild_step", "built_by", "rebuild_with",
                             "forward_kwargs", "logits_of", "save_model", "is_saved"),
    "compressbench.training": ("task_loss", "supervised_loss", "to_device", "device_of"),
    "compressbench.data": ("IGNORE", "encode", "collate", "length_grouped_batches"),
    "compressbench.batching": ("n_tokens",),
    "compressbench.losses": ("soft_loss", "soft_cross_entropy", "kd_loss", "masked_mean",
                             "masked_mse", "label_mask", "pair_mask", "attention_kl",
                             "relation", "gold_loss"),
    "compressbench.augment": ("Lexicon", "lexicon_path", "tang_copies", "TangOptions"),
    "compressbench.capture": ("capture", "Captured"),
    "compressbench.measure.backend": ("Unsupported",),
    "compressbench.measure.protocol": ("as_batch",),
    "compressbench.runtimes.onnxruntime": ("export_onnx",),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names}
_MODULES = {"onnxrt": "compressbench.runtimes.onnxruntime",
            "openvino": "compressbench.runtimes.openvino"}

__all__ = ["hookimpl", "ConfigError", "CompressBenchError", *_LAZY, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _MODULES:
        return import_module(_MODULES[name])
    raise AttributeError(f"module 'compressbench.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
