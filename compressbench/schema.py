"""Strict conversion of YAML data into frozen dataclasses, with errors that name the key path.

``build(cls, data, where)`` checks that every key is a field (suggesting the closest one), that
every value has the field's type (ints are accepted for floats, and numeric strings such as
YAML's ``5e-5`` too), and recurses into nested dataclasses, lists and optionals.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from compressbench.errors import ConfigError, did_you_mean


def build(cls: type, data: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from mapping ``data``; ``where`` prefixes errors."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type_name(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}'.{did_you_mean(key, fields)} "
                              f"Allowed: {', '.join(fields)}")
        kwargs[key] = convert(hints[key], value, f"{where}.{key}")
    missing = [n for n, f in fields.items() if n not in kwargs and
               f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key '{missing[0]}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ checks
        raise ConfigError(f"{where}: {exc}") from None


def convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error is the precise one
            return convert(options[0], value, where)
        for arg in options:
            try:
                return convert(arg, value, where)
            except ConfigError:
                pass
        expected = " or ".join(type_label(a) for a in args)
        raise ConfigError(f"{where}: expected {expected}, got {type_name(value)} {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of "
                              f"{', '.join(map(str, args))}.{did_you_mean(value, map(str, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type_name(value)} {value!r}")
        item = args[0] if args else Any
        return tuple(convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type_name(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type_name(value)} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type_name(value)} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got a boolean {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 5e-5 as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {type_name(value)} {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type_name(value)} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing (null)"}.get(
        type(value), type(value).__name__)


def type_label(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, "a list" if typing.get_origin(tp) in (list, tuple) else
        "a mapping" if typing.get_origin(tp) is dict or dataclasses.is_dataclass(tp) else str(tp))


#: field metadata of a setting added after cache keys existed: left out of :func:`as_dict`
#: while it has its default, so the keys (and records) made before it stay the same
ADDED_LATER = {"omit_at_default": True}


def as_dict(obj: Any) -> Any:
    """JSON-ready form of a (nested) dataclass (a field marked :data:`ADDED_LATER` only when it
    is not at its default)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_at_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, list | tuple):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj
