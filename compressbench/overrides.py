"""Command-line overrides of a suite: ``KEY=VALUE`` with a dotted key and a YAML value.

    compressbench run suites/glue.yaml training.epochs=1 tasks=[sst2] seeds=[42] \\
        'methods[kd-3L].temperature=4' 'methods[0].student.layers=2'

A key is a path into the suite's mapping: names separated by dots, and ``[N]`` (a list index)
or, in ``methods``, ``[LABEL]`` (the entry whose ``label``, or else ``name``, is LABEL). The value
is read as YAML (``1``, ``[sst2]``, ``{layers: 3}``, ``null``), safe and without tags. The
overridden suite is validated exactly like a file, and the run directory's ``suite.yaml`` is the
overridden suite with the overrides listed at its top.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from compressbench.errors import ConfigError

PART = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def parse(override: str, where: str) -> tuple[list[str | int], Any]:
    """``"a.b[kd].c=VALUE"`` -> (["a", "b", "[kd]", "c"], value)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{where}: override {override!r}: expected KEY=VALUE, e.g. "
                          f"training.epochs=1 or 'methods[kd-3L].temperature=4'")
    parts: list[str | int] = []
    pos = 0
    key = key.strip()
    while pos < len(key):
        if key[pos] == "." and parts:
            pos += 1
        match = PART.match(key, pos)
        if match is None or match.end() == pos:
            raise ConfigError(f"{where}: override {override!r}: cannot read the key at "
                              f"{key[pos:]!r}")
        name, index = match.groups()
        parts.append(name if name is not None else f"[{index}]")
        pos = match.end()
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: override {override!r}: the value is not valid YAML "
                          f"({getattr(exc, 'problem', None) or exc})") from None
    return parts, value


def entry_label(entry: Any) -> str | None:
    if isinstance(entry, dict):
        return entry.get("label") or entry.get("name")
    return None


def child(container: Any, part: str, path: str, override: str, where: str,
          create: bool) -> tuple[Any, Any]:
    """(the container to set in, the key or index) for ``part`` of ``container``."""
    if part.startswith("["):
        inner = part[1:-1]
        if not isinstance(container, list):
            raise ConfigError(f"{where}: override {override!r}: {path or 'the suite'} is not a "
                              f"list, so [{inner}] does not apply")
        if re.fullmatch(r"-?\d+", inner):
            i = int(inner)
            if not -len(container) <= i < len(container):
                raise ConfigError(f"{where}: override {override!r}: {path}[{i}]: there are "
                                  f"{len(container)} entries")
            return container, i
        labels = [entry_label(e) for e in container]
        if inner not in labels:
            from compressbench.errors import did_you_mean
            named = ", ".join(str(x) for x in labels if x)
            raise ConfigError(f"{where}: override {override!r}: no entry of {path} is labelled "
                              f"'{inner}'.{did_you_mean(inner, [x for x in labels if x])} "
                              f"Labels: {named}")
        return container, labels.index(inner)
    if not isinstance(container, dict):
        raise ConfigError(f"{where}: override {override!r}: {path or 'the suite'} is not a "
                          f"mapping, so .{part} does not apply")
    if part not in container and create:
        container[part] = {}
    return container, part


def apply(data: Any, overrides: list[str], where: str) -> Any:
    """``data`` (a parsed suite) with ``overrides`` applied in order (a copy)."""
    import copy

    data = copy.deepcopy(data)
    for override in overrides:
        parts, value = parse(override, where)
        node, path = data, ""
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, dict) and part == "teacher" and isinstance(node.get(part), str) \
                    and not last:
                node[part] = {"model": node[part]}  # teacher: NAME is short for {model: NAME}
            container, key = child(node, str(part), path, override, where, create=not last)
            path += str(part) if part.startswith("[") or not path else f".{part}"
            if last:
                container[key] = value
            else:
                node = container[key]
                if node is None:
                    container[key] = node = {}
    return data


def overridden_text(text: str, data: Any, overrides: list[str], path: Path) -> str:
    """The suite as the run used it: the overrides listed, then the suite as YAML."""
    if not overrides:
        return text
    head = [f"# {path} with command-line overrides:"] + [f"#   {o}" for o in overrides]
    return "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
