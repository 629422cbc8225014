"""The plugin manager: built-ins, entry points and ``--plugin`` files, loaded the same way.

Nothing is registered at import time. ``get_plugin_manager()`` builds a fresh manager; the
registries of tasks, methods and reporters are filled on first use by calling each plugin's
``register_*`` hook with a callback that knows which plugin is registering.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from compressbench import hookspecs
from compressbench.errors import ConfigError, PluginError, did_you_mean

GROUP = "compressbench"
DISABLE_ENV = "COMPRESSBENCH_DISABLE_PLUGINS"  # comma-separated plugin names
TRACE_ENV = "COMPRESSBENCH_TRACE"  # set to 1 to print every hook call to stderr
# methods each what of registered object must have (checked at registration)
REQUIRED = {"backends": ("missing", "prepare", "load"), "executors": ("missing", "start"),
            "augmenters": ("check", "augment")}


class PluginManager(pluggy.PluginManager):
    """A pluggy manager with the three registries attached."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.plugin_files: list[Path] = []
        self.blocked_names: tuple[str, ...] = ()
        self._registries: dict[str, Registry] = {}

    def registry(self, what: str) -> Registry:
        """The registry for ``what`` in ('task_kinds', 'tasks', 'methods', 'reporters',
        'backends', 'executors', 'augmenters'), filled on first use."""
        if what not in self._registries:
            self._registries[what] = Registry.collect(self, what)
        return self._registries[what]

    @property
    def tasks(self) -> Registry:
        return self.registry("tasks")

    @property
    def methods(self) -> Registry:
        return self.registry("methods")

    @property
    def reporters(self) -> Registry:
        return self.registry("reporters")

    @property
    def backends(self) -> Registry:
        return self.registry("backends")

    @property
    def task_kinds(self) -> Registry:
        return self.registry("task_kinds")

    @property
    def executors(self) -> Registry:
        return self.registry("executors")

    @property
    def augmenters(self) -> Registry:
        return self.registry("augmenters")

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        self._registries.clear()  # a new plugin may register new things
        return super().register(plugin, name)


#: what -> name -> the object a plugin manager of this process registered last under it
_SEEN: dict[str, dict[str, Any]] = {}


def seen(what: str) -> dict[str, Any]:
    """The objects of kind ``what`` (``"backends"``, ...) that plugin managers of this process
    have registered, by name (the last one for a name): what a backend's marker or a saved
    format's owner is looked up in, without scanning the installed plugins."""
    return _SEEN.setdefault(what, {})


_MISSES: set[tuple[str, str]] = set()  # (what, key) no installed plugin registers


def find_seen(what: str, key: str, match) -> Any | None:
    """The last object of kind ``what`` registered in this process that ``match`` accepts;
    when there is none, the installed plugins are registered once to look again (a miss is
    remembered under ``key``): a backend by name for its marker, by saved format for its
    owner."""
    def look():
        return next((o for o in reversed(seen(what).values()) if match(o)), None)

    found = look()
    if found is None and (what, key) not in _MISSES:
        get_plugin_manager().registry(what)
        found = look()
        if found is None:
            _MISSES.add((what, key))
    return found


@dataclass
class Registry:
    """Name -> object for one what of thing, with the plugin that registered each."""

    what: str  # 'tasks', 'methods', 'task_kinds', ...
    items: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    blocked: tuple[str, ...] = ()  # the plugins blocked in the manager it was collected from

    @property
    def singular(self) -> str:
        return self.what[:-1].replace("_", " ")

    @classmethod
    def collect(cls, pm: PluginManager, what: str) -> Registry:
        reg = cls(what, blocked=tuple(getattr(pm, "blocked_names", ())))
        hook = getattr(pm.hook, f"register_{what}")
        trace = pm.trace.root.get("hook")
        # Each implementation is called on its own so the registry knows who registered what
        # (pluggy's hook call would merge them); tracing is reported the same way.
        for impl in hook.get_hookimpls():
            trace(f"register_{what} [{impl.plugin_name}]")
            def register(obj: Any, _owner: str = impl.plugin_name) -> None:
                reg.add(obj, _owner)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:  # a plugin's bug, reported with its name
                raise PluginError(
                    f"plugin '{impl.plugin_name}' failed in register_{what}: "
                    f"{type(exc).__name__}: {exc}") from exc
        return reg

    def add(self, obj: Any, owner: str) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{owner}' registered a {self.singular} without a string "
                              f"`name` attribute: {obj!r}")
        if name in self.items:
            raise PluginError(f"{self.singular} '{name}' is registered twice: by plugin "
                              f"'{self.owners[name]}' and by plugin '{owner}'. Block one with "
                              f"-p no:{owner} (or {DISABLE_ENV}={owner}).")
        lacking = [a for a in REQUIRED.get(self.what, ()) if not callable(getattr(obj, a, None))]
        if lacking:
            raise PluginError(f"plugin '{owner}' registered {self.singular} '{name}' without "
                              f"{', '.join(lacking)} (see the {self.singular} protocol in "
                              f"docs/plugins.md)")
        self.items[name] = obj
        self.owners[name] = owner
        seen(self.what)[name] = obj  # e.g. the report finds a backend's marker, a model its format
        registered = getattr(obj, "registered", None)
        if callable(registered):  # e.g. a task kind, which records find again by name
            registered()

    def get(self, name: str, where: str = "") -> Any:
        """The object registered as ``name``; a ConfigError with suggestions if there is none."""
        if name not in self.items:
            prefix = f"{where}: " if where else ""
            if name in self.blocked:
                raise ConfigError(
                    f"{prefix}{self.singular} '{name}' is not available: the plugin '{name}' "
                    f"is blocked (-p no:{name} or {DISABLE_ENV}); unblock it to use it")
            blocked = (f" Blocked plugins, whose {self.what.replace('_', ' ')} are missing: "
                       f"{', '.join(self.blocked)}." if self.blocked else "")
            raise ConfigError(
                f"{prefix}unknown {self.singular} '{name}'.{did_you_mean(name, self.items)} "
                f"Installed: {', '.join(sorted(self.items)) or '(none)'}.{blocked}")
        return self.items[name]

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def __iter__(self):
        return iter(sorted(self.items))


def load_plugin_file(pm: PluginManager, path: str | os.PathLike) -> str:
    """Import a single ``.py`` file as a plugin; returns the name it was registered under."""
    path = Path(path).resolve()
    if not path.is_file():
        raise PluginError(f"{path}: plugin file not found (check the --plugin / plugins: path)")
    name = f"file:{path.stem}"
    if pm.is_blocked(name) or pm.is_blocked(path.stem):
        return name
    if pm.get_plugin(name) is not None:
        return name
    module_name = f"compressbench_userplugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so models defined there can be pickled and re-loaded
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(f"{path}: plugin failed to import: {type(exc).__name__}: {exc}") from exc
    pm.register(module, name)
    pm.plugin_files.append(path)
    return name


def load_entry_points(pm: PluginManager, only: Iterable[str] | None = None) -> None:
    """Register every installed plugin of the ``compressbench`` entry-point group (``only``:
    those named), one at a time, so that one that fails to import is named, with its
    distribution and the way past it (pluggy's ``load_setuptools_entrypoints`` reports only
    the exception)."""
    only = None if only is None else set(only)
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != GROUP or pm.get_plugin(ep.name) or pm.is_blocked(ep.name) or \
                    (only is not None and ep.name not in only):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"the installed compressbench plugin '{ep.name}' (entry point "
                    f"'{ep.name} = {ep.value}' of the distribution "
                    f"{dist.metadata['Name']} {dist.version}) failed to load: "
                    f"{type(exc).__name__}: {exc}. Skip it with -p no:{ep.name} (or "
                    f"{DISABLE_ENV}={ep.name}), or fix or uninstall "
                    f"{dist.metadata['Name']}") from exc
            pm.register(plugin, name=ep.name)
            pm._plugin_distinfo.append((plugin, pluggy._manager.DistFacade(dist)))


def get_plugin_manager(plugin_files: Iterable[str | os.PathLike] = (),
                       blocked: Iterable[str] = (),
                       entry_points: bool = True) -> PluginManager:
    """A fresh manager with every installed plugin (entry-point group ``compressbench``),
    minus ``blocked`` and those named in $COMPRESSBENCH_DISABLE_PLUGINS, plus ``plugin_files``."""
    pm = PluginManager()
    names = list(blocked) + [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",")]
    pm.blocked_names = tuple(filter(None, names))  # a worker process blocks the same ones
    for name in pm.blocked_names:
        pm.set_blocked(name)
    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    if entry_points:
        load_entry_points(pm)
    for path in plugin_files:
        load_plugin_file(pm, path)
    return pm


def unknown_blocked(names: Iterable[str], plugin_files: Iterable[str | os.PathLike] = ()
                    ) -> list[str]:
    """Of ``names`` (``-p no:NAME``), those that name no installed plugin (an entry point of
    the ``compressbench`` group) and no plugin file: a typo would otherwise block nothing."""
    known = {ep.name for ep in importlib.metadata.entry_points(group=GROUP)}
    for path in plugin_files:
        known |= {Path(path).stem, f"file:{Path(path).stem}"}
    return [n for n in names if n not in known]


def module_of(obj: Any) -> Any:
    """The module that defines ``obj`` (a module, a class or an instance), or None."""
    if isinstance(obj, type(sys)):
        return obj
    return sys.modules.get((obj if isinstance(obj, type) else type(obj)).__module__)


def source_files(obj: Any) -> list[Path]:
    """The source files of the code that defines ``obj`` (a module, a class or an instance):
    every ``.py`` file of its top-level package, or its module's one file; [] when it has no
    file (defined in ``__main__`` or interactively). A method's loss often lives in a helper
    module beside it, so the whole package counts."""
    module = module_of(obj)
    if module is None:
        return []
    top = sys.modules.get(module.__name__.partition(".")[0])
    roots = [Path(p) for p in getattr(top, "__path__", None) or []]
    if roots:
        return sorted({p for root in roots if root.is_dir() for p in root.rglob("*.py")
                       if "__pycache__" not in p.parts and not p.is_symlink()})
    file = getattr(module, "__file__", None)
    return [Path(file)] if file and Path(file).is_file() else []


def source_digest(obj: Any) -> str | None:
    """A digest (16 hex digits) of :func:`source_files` of ``obj``: names and contents, so an
    edit to a plugin's code changes it. None when there is no source file to read. Read once
    per imported module: it describes the code this process runs, even if the files are
    edited while it runs (a worker that imports them later sees the edit, and refuses)."""
    module = module_of(obj)
    if module is None:
        return None
    top = sys.modules.get(module.__name__.partition(".")[0])
    holder = top if getattr(top, "__path__", None) else module  # one digest per package
    if "__compressbench_digest__" not in vars(holder):
        holder.__compressbench_digest__ = files_digest(source_files(holder))
    return holder.__compressbench_digest__


def files_digest(files: list[Path]) -> str | None:
    """sha256 over the files' names (relative to their common folder) and contents."""
    if not files:
        return None
    from compressbench.cache import file_digest

    root = files[0].parent if len(files) == 1 else Path(os.path.commonpath(files))
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(root).as_posix()}\0{file_digest(path)}\n".encode())
    return h.hexdigest()[:16]


def provenance(pm: PluginManager) -> list[dict]:
    """Every plugin of ``pm`` as a record keeps it: name, version (its distribution's, or a
    module's ``__version__``), source (the entry point's distribution or the plugin file's
    path) and the digest of its source files (:func:`source_digest`)."""
    return [{k: row[k] for k in ("name", "version", "source", "digest")}
            for row in describe(pm, names=False)]


def describe(pm: PluginManager, names: bool = True) -> list[dict]:
    """One dict per plugin: name, version, source, the digest of its source files
    (:func:`source_digest`), hooks implemented, names registered (``names=False``: skip the
    names, which loads every registry)."""
    dists = {plugin: dist for plugin, dist in pm.list_plugin_distinfo()}
    registered: dict[str, list[str]] = {}
    for what in ("task_kinds", "tasks", "methods", "reporters", "backends", "executors",
                 "augmenters") if names else ():
        reg = pm.registry(what)
        for item, owner in reg.owners.items():
            registered.setdefault(owner, []).append(f"{what[:-1]}:{item}")
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        if plugin is None:
            continue
        dist = dists.get(plugin)
        if dist is not None:
            source, version = f"entry point ({dist.project_name})", dist.version
        else:
            source = str(getattr(plugin, "__file__", "")) or "in-process"
            version = getattr(plugin, "__version__", "-")
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "version": version, "source": source,
                     "digest": source_digest(plugin), "hooks": hooks,
                     "registered": sorted(registered.get(name, []))})
    return rows


def describe_method(method) -> str:
    """A method's description, then each parameter as written in its ``Params`` dataclass
    (type, default and the comment that cites its source)."""
    import dataclasses
    import inspect
    lines = [f"{method.name}: {getattr(method, 'description', '')}".rstrip(": ")]
    params = getattr(method, "Params", None)
    if params is None:
        return "\n".join(lines + ["  (no parameters)"])
    source = []
    for cls in params.__mro__:  # fields inherited from a shared base dataclass too
        if dataclasses.is_dataclass(cls):
            try:
                source += inspect.getsource(cls).splitlines()
            except (OSError, TypeError):
                pass
    for f in dataclasses.fields(params):
        written = next((ln.strip() for ln in source if ln.strip().startswith(f"{f.name}:")), None)
        if written is None:
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            written = f"{f.name} = {default!r}"
        lines.append(f"  {written}")
    defaults = getattr(method, "training_defaults", None)
    if defaults:
        lines.append(f"  training defaults: {defaults} (a suite entry's `training:` wins)")
    return "\n".join(lines)


def distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
