"""Rebuilding a model a config cannot describe: functions marked with :func:`rebuild_step`, named
``module:function`` in a saved recipe, and only from compressbench or a plugin the user
installed or loaded."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from compressbench.errors import CompressBenchError
from compressbench.models.io import META

REBUILD_MARK = "__compressbench_rebuild_step__"


RECIPE_ATTR = "_compressbench_recipe"


#: "module:qualname" -> function, filled by :func:`rebuild_step` as plugin modules load. A
#: recipe's names are looked up here and nowhere else: nothing a folder names is imported.
REBUILD_STEPS: dict[str, Any] = {}
#: compressbench's own modules with rebuild steps, imported before a recipe is resolved (a fixed
#: list: nothing a folder names)
CORE_STEP_MODULES = ("compressbench.models.heads",)


def rebuild_step(fn):
    """Mark a module-level function (or class) as usable in a saved model's recipe: as a
    factory (``fn(**kwargs) -> nn.Module``, see :func:`built_by`) or a transform
    (``fn(model, **kwargs) -> nn.Module``, see :func:`rebuild_with`). Loading calls only
    functions registered this way by ``compressbench``, an installed compressbench plugin or a
    ``--plugin`` file the user loaded."""
    setattr(fn, REBUILD_MARK, True)
    REBUILD_STEPS[f"{fn.__module__}:{fn.__qualname__}"] = fn
    return fn


def ref_of(fn) -> str:
    if not getattr(fn, REBUILD_MARK, False):
        raise TypeError(f"{fn!r} is not marked with @compressbench.rebuild_step")
    return f"{fn.__module__}:{fn.__qualname__}"


def recipe_of(model: nn.Module) -> dict:
    """The model's rebuild recipe so far: ``factory`` (or None: its config) and ``steps``."""
    recipe = getattr(model, RECIPE_ATTR, None) or {}
    return {"factory": recipe.get("factory"), "steps": list(recipe.get("steps", []))}


def set_recipe(model: nn.Module, recipe: dict) -> nn.Module:
    model.__dict__[RECIPE_ATTR] = json.loads(json.dumps(recipe))  # plain data, deep-copied
    return model


def built_by(model: nn.Module, factory, **kwargs) -> nn.Module:
    """Declare that ``factory(**kwargs)`` builds ``model``'s architecture (for models that are
    not ``transformers`` models, e.g. the BiLSTM student). Returns ``model``."""
    recipe = recipe_of(model)
    recipe["factory"] = {"fn": ref_of(factory), "kwargs": kwargs}
    return set_recipe(model, recipe)


def rebuild_with(model: nn.Module, transform, **kwargs) -> nn.Module:
    """Declare that loading ``model`` needs ``transform(model, **kwargs)`` applied to the freshly
    built architecture before its weights are loaded (e.g. quantization, which changes module
    types). Transforms accumulate along a chain. Returns ``model``."""
    recipe = recipe_of(model)
    recipe["steps"].append({"fn": ref_of(transform), "kwargs": kwargs})
    return set_recipe(model, recipe)


def trusted_packages() -> set[str]:
    """Top-level packages whose marked functions a recipe may name: compressbench, installed
    compressbench plugins (entry points, not imported here), and plugin files already loaded."""
    import importlib.metadata
    import sys

    names = {"compressbench"}
    for ep in importlib.metadata.entry_points(group="compressbench"):
        names.add(ep.value.split(":")[0].split(".")[0])
    names.update(m for m in sys.modules if m.startswith("compressbench_userplugin_"))
    return names


def load_plugin_modules() -> None:
    """Import the modules of the installed compressbench plugins (entry points, as the plugin
    manager does), and compressbench's own (:data:`CORE_STEP_MODULES`), so their rebuild steps
    are registered. Nothing a saved folder names."""
    import importlib
    import importlib.metadata

    for name in CORE_STEP_MODULES:
        importlib.import_module(name)

    for ep in importlib.metadata.entry_points(group="compressbench"):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin: its steps stay unknown
            import sys
            print(f"compressbench: warning: plugin {ep.name} ({ep.value}) failed to import "
                  f"({type(exc).__name__}); its rebuild steps are unavailable", file=sys.stderr)


def resolve_step(ref: str, folder: Path):
    """The registered rebuild step ``module:qualname`` names. The name is checked against
    :data:`REBUILD_STEPS` before anything is imported or looked up by attribute."""
    import sys

    ref = str(ref) if isinstance(ref, str) else repr(ref)

    def registered():  # by a module that is loaded now (a plugin file unloaded no longer counts)
        fn = REBUILD_STEPS.get(ref)
        return fn if fn is not None and fn.__module__ in sys.modules else None

    if registered() is None:
        load_plugin_modules()
    if registered() is not None:
        return registered()
    top = ref.partition(":")[0].split(".")[0]
    if top not in trusted_packages():
        raise CompressBenchError(
            f"{folder / META}: the recipe names '{ref}', which is not in compressbench or an "
            f"installed compressbench plugin; install the plugin that made the model (or load "
            f"its file with --plugin FILE.py)")
    raise CompressBenchError(f"{folder / META}: '{ref}' is not a function marked "
                             f"@compressbench.rebuild_step (no registered rebuild step has "
                             f"that name)")


def call_step(spec, folder: Path, *args) -> nn.Module:
    """Run one recipe entry (``{"fn": ..., "kwargs": {...}}``), any error in its arguments a
    one-line error naming the folder."""
    if not isinstance(spec, dict) or "fn" not in spec:
        raise CompressBenchError(f"{folder / META}: a recipe entry must be an object with 'fn' "
                                 f"and 'kwargs', not {str(spec)[:80]!r}")
    fn = resolve_step(spec["fn"], folder)
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CompressBenchError(f"{folder / META}: the 'kwargs' of {spec['fn']} must be an "
                                 f"object")
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressBenchError(f"{folder / META}: {spec['fn']} refused its recipe arguments "
                                 f"({type(exc).__name__}: {first[:200]})") from None


def linear_shapes(model: nn.Module, fresh: nn.Module) -> dict[str, list[int]]:
    """Linear layers (float or quantized) whose (out, in) shape differs from ``fresh``'s."""
    out = {}
    for name, module in fresh.named_modules():
        if isinstance(module, nn.Linear):
            try:
                mine = model.get_submodule(name)
            except AttributeError:
                continue
            shape = [getattr(mine, "out_features", None), getattr(mine, "in_features", None)]
            if shape != [module.out_features, module.in_features]:
                out[name] = shape
    return out


def resize_linears(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace each named Linear by one of the given (out, in) shape (weights loaded after)."""
    for name, (n_out, n_in) in shapes.items():
        old = model.get_submodule(name)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr,
                nn.Linear(n_in, n_out, bias=old.bias is not None, dtype=old.weight.dtype))
