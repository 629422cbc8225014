"""The backend protocol: how a runtime loads a saved model and runs it, for measurement.

A backend is an object registered through the ``register_backends`` hook (a one-file plugin is
enough, like a method) with:

- ``name``: what suites write in ``measure.backends``; ``description``;
- ``packages``: the distributions whose versions go into every record it makes;
- ``missing() -> str | None``: why it cannot run on this machine at all (a package is not
  installed, with the ``pip install`` that fixes it), or None;
- ``prepare(model: SavedModel, workdir: Path, sample: list[dict]) -> dict``: untimed, once per
  model (the result is cached in ``workdir``): export or convert the saved model. Raise
  :class:`Unsupported` with the reason when this backend cannot run this model; return
  JSON-serialisable facts (export time, fusions applied) for the record;
- ``load(model: SavedModel, workdir: Path, threads: int) -> Session``;
- optionally ``needs_prepare = False``: ``prepare`` has nothing to do (the saved model loads as
  it is); the untimed process still runs once per model to check the backend's outputs
  against PyTorch's (only PyTorch eager itself, the reference, skips it);
- optionally ``also_runs``: runtimes whose runtime-only models it can run too (OpenVINO reads
  ONNX Runtime's graphs); any other runtime-only model is recorded as unsupported without
  starting a process;
- optionally ``Options`` (a dataclass: the backend's own settings, written in a suite as
  ``measure: {backends: [{NAME: {setting: value}}]}`` and checked with the key named) and
  ``configure(options) -> backend``: the backend with those settings (the measuring process
  calls it before ``prepare`` and ``load``; the settings are part of the export's cache folder
  and of the record);
- optionally a **saved format** of its own, for models that exist only for this runtime (what
  ``quant-ort`` and ``quant-openvino`` make): ``saved_format`` (the name in the folder's
  ``compressbench.json``), ``load_saved(folder, config) -> nn.Module`` (a module that evaluates
  like a PyTorch model by running the runtime; the model object's own ``save_files(folder)``
  writes the format), ``verify_saved(folder)`` (a one-line error when a file is missing),
  ``card`` (model-card lines on how to run an export) and ``library`` (its ``library_name``);
- optionally ``marker``: its matplotlib marker in the report's plots (one of the free ones
  when it names none).

Registering a backend makes it known to this process (:func:`compressbench.plugins.seen`):
the report finds its marker, and :func:`compressbench.models.load_model` the owner of a saved
format, without scanning the installed plugins.

The built-in runtimes are one file each in :mod:`compressbench.runtimes`.

A session has ``inputs(batch) -> prepared`` (``batch``: int64 numpy arrays ``input_ids``,
``attention_mask``, ``token_type_ids`` of shape (B, T); converting them is never timed),
``__call__(prepared)`` (the timed forward pass) and ``logits(output) -> numpy.ndarray``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from compressbench import errors

#: the backend every speed-up is also measured against (PyTorch eager fp32)
REFERENCE = "torch"

Unsupported = errors.Unsupported  # this backend cannot run this model (recorded, not an error)


@dataclass(frozen=True)
class SavedModel:
    """A model folder as a backend sees it: where it is and what ``compressbench.json`` says."""

    folder: Path
    meta: dict

    @classmethod
    def at(cls, folder: Path) -> SavedModel:
        """The saved model in ``folder`` (its ``compressbench.json`` read as data)."""
        from compressbench.models import read_meta
        return cls(Path(folder), read_meta(folder))

    @property
    def format(self) -> str:
        """How it is saved: ``"hf"`` (save_pretrained), ``"weights"``, or a runtime's own
        format (``"onnx"``, ``"openvino"``)."""
        return self.meta.get("format", "")

    @property
    def kind(self) -> str:
        """The name of its task kind (``"classification"``, ``"token"``, ...)."""
        return self.meta["kind"]

    @property
    def runtime_only(self) -> str | None:
        """The runtime this model was made for, when it exists only for one (the backend that
        owns its saved format)."""
        from compressbench.models.io import format_owner
        owner = format_owner(self.format)
        return owner.name if owner is not None else None

    def load_torch(self):
        """The PyTorch model (raises Unsupported for a runtime-only model)."""
        if self.runtime_only:
            raise Unsupported(f"the model exists only for {self.runtime_only} "
                              f"(saved as '{self.format}')")
        from compressbench.models import load_model
        return load_model(self.folder)


@runtime_checkable
class Session(Protocol):
    """A loaded model on one runtime, as :meth:`Backend.load` returns it."""

    def inputs(self, batch: dict) -> Any:
        """``batch`` (int64 numpy arrays ``input_ids``, ``attention_mask``,
        ``token_type_ids``, (B, T)) in the runtime's form; never timed."""

    def __call__(self, prepared: Any) -> Any:
        """One forward pass on :meth:`inputs`' result: the timed call."""

    def logits(self, output: Any) -> Any:
        """The logits of a call's output as a numpy array ((B, C) or (B, T, C))."""


@runtime_checkable
class Backend(Protocol):
    """A runtime to measure on, registered with ``register_backends`` (the module docstring
    of :mod:`compressbench.measure.backend` lists the optional attributes: ``Options``,
    ``configure``, ``needs_prepare``, ``also_runs``, a saved format, ``marker``)."""

    name: str  # what suites write in measure.backends
    description: str  # one line, shown by `compressbench plugins`
    packages: tuple[str, ...]  # distributions whose versions go into every record it makes

    def missing(self) -> str | None:
        """Why it cannot run on this machine at all (with the ``pip install`` that fixes
        it), or None; checked before a suite trains anything."""

    def prepare(self, model: SavedModel, workdir: Path, sample: list[dict]) -> dict:
        """Untimed, in a process of its own, once per model (cached in ``workdir``): export
        or convert ``model``; raise :class:`Unsupported` when this backend cannot run it.
        ``sample``: a few tokenized examples to check a conversion on. Returns JSON facts
        for the record."""

    def load(self, model: SavedModel, workdir: Path, threads: int) -> Session:
        """The model ready to run with ``threads`` threads, in the measuring process."""


#: markers for backends that name none, or one an earlier backend of the plot took
#: ("o", "*" and "x" mark the models themselves)
FREE_MARKERS = ("P", "v", "<", ">", "h", "p", "X", "d", "8", "H")


def marker(name: str) -> str | None:
    """The marker a backend names for the report's plots (None when it names none): one a
    plugin manager of this process registered, else one an installed plugin registers."""
    from compressbench.plugins import find_seen

    return getattr(find_seen("backends", name, lambda b: b.name == name), "marker", None)


def markers(names) -> dict[str, str]:
    """One distinct matplotlib marker per backend of a plot, in the order given: its own,
    unless an earlier one took it, else the next free one (two plugin backends that name
    none, or the same, still differ)."""
    names = list(names)
    declared = {marker(n) for n in names}
    free = iter([m for m in FREE_MARKERS if m not in declared] + list(FREE_MARKERS) * 2)
    out: dict[str, str] = {}
    for name in names:
        own = marker(name)
        out[name] = own if own and own not in out.values() else next(
            m for m in free if m not in out.values())
    return out


def backend_options(backend, raw: dict | None, where: str):
    """The backend's ``Options`` built from the suite's settings for it (None when it has
    none and none were given); a ConfigError naming ``where`` otherwise."""
    from compressbench import schema

    options_cls = getattr(backend, "Options", None)
    if options_cls is None:
        if raw:
            raise errors.ConfigError(f"{where}: the {backend.name} backend takes no settings "
                                     f"({sorted(raw)[0]!r} given)")
        return None
    return schema.build(options_cls, raw or {}, where)


def configured(backend, raw: dict | None, where: str = "measure.backends"):
    """``backend`` with the suite's settings applied (itself when it has no ``Options``)."""
    options = backend_options(backend, raw, where)
    return backend if options is None else backend.configure(options)


def missing_module(module: str, extra: str) -> str | None:
    """Why a backend cannot run here: ``module`` is not installed (with the fix), or None."""
    import importlib.util
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed: pip install 'compressbench[{extra}]'"
    return None


def sample_batches(sample: list[dict], n: int = 8) -> list[dict]:
    """Single-example int64 batches for checking a converted graph against its source."""
    from compressbench.measure.protocol import as_batch
    return [as_batch([f]) for f in sample[:n]]


def versions(backend) -> dict[str, str | None]:
    from compressbench.plugins import distribution_version
    return {p: distribution_version(p) for p in getattr(backend, "packages", ())}


PREPARED = "prepared.json"


def read_prepared(workdir: Path) -> dict | None:
    """What ``prepare`` returned for this model, if it already ran (its cached result)."""
    path = Path(workdir) / PREPARED
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
