"""The plugin API reference, generated from :data:`compressbench.api.SECTIONS` and the
docstrings: ``python -m compressbench.apidoc > docs/api.md``.

Every public name gets its signature and its docstring; a class also gets its attributes
(with the comment written beside each in its source: a dataclass's fields, a method's
contract attributes) and its public methods. ``tests/test_apidoc.py`` fails when
``docs/api.md`` differs from :func:`render`, when a public name has no documentation, and when
an example (``>>>``) in it does not run.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from importlib import import_module
from typing import Any

HEADER = """# `compressbench.api` reference

Generated from the docstrings by `python -m compressbench.apidoc > docs/api.md` (a test fails
when this file is out of date, and runs every `>>>` example in it). Everything here is
imported from one module, `from compressbench import api`; the built-in plugins use nothing
else. How the pieces fit together: [plugins.md](plugins.md).
"""


def markdown(doc: str) -> str:
    """A docstring as markdown: reST roles and double backticks become code spans, ``>>>``
    examples become fenced blocks."""
    doc = re.sub(r":(?:func|class|meth|attr|mod|data|exc):`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("``", "`")
    out: list[str] = []
    in_example = False
    for line in doc.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not in_example:
            out.append("```pycon")
            in_example = True
        elif in_example and not line.strip():
            out.append("```")
            in_example = False
        out.append(line)
    if in_example:
        out.append("```")
    return "\n".join(out).strip()


def annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature(name: str, obj: Any) -> str:
    """``name(a: int, b: str = 'x', *, c=None) -> T`` as written (annotations are strings
    under ``from __future__ import annotations``; defaults as ``repr``)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    P = inspect.Parameter
    parts, star = [], False
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        passing = p.kind  # positional, keyword-only, *args, **kwargs
        if passing is P.KEYWORD_ONLY and not star:
            parts.append("*")
        star = star or passing in (P.KEYWORD_ONLY, P.VAR_POSITIONAL)
        text = {P.VAR_POSITIONAL: "*", P.VAR_KEYWORD: "**"}.get(passing, "") + p.name
        if p.annotation is not P.empty:
            text += f": {annotation(p.annotation)}"
        if p.default is not P.empty:
            text += f" = {p.default!r}" if p.annotation is not P.empty else f"={p.default!r}"
        parts.append(text)
    ret = "" if sig.return_annotation is P.empty else f" -> {annotation(sig.return_annotation)}"
    return f"{name}({', '.join(parts)}){ret}"


def attribute_comments(cls: type) -> dict[str, tuple[str, str]]:
    """The attributes written in ``cls``'s own body: name -> (the line as written, without its
    comment; the comment beside it or on the lines just above)."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    src = source.splitlines()
    out = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            names += [e.id for t in node.targets if isinstance(t, ast.Tuple) for e in t.elts
                      if isinstance(e, ast.Name)]
        else:
            continue
        first = src[node.lineno - 1]
        comment = comment_at(src, node.lineno - 1, node.end_lineno - 1)
        written = first.split("  # ", 1)[0].strip() if node.lineno == node.end_lineno \
            else first.strip() + " ..."
        for name in names:
            if not name.startswith("_"):
                out[name] = (written, comment)
    return out


def comment_at(src: list[str], first: int, last: int) -> str:
    """The comment of the statement on lines ``first``..``last`` (0-based) of ``src``: the
    comment lines just above it (``#:`` or ``#``), then the one beside its last line."""
    beside = src[last].split("  # ", 1)[1].strip() if "  # " in src[last] else ""
    above, i = [], first - 1
    while i >= 0 and src[i].strip().startswith("#"):
        above.insert(0, src[i].strip().lstrip("#:").strip())
        i -= 1
    return " ".join(filter(None, [" ".join(above), beside]))


def own_doc(obj: Any) -> str | None:
    """``obj``'s own docstring (not one inherited from ``object`` or a builtin type)."""
    doc = getattr(obj, "__doc__", None)
    if not doc or (isinstance(obj, type) and doc == getattr(obj.__mro__[1], "__doc__", None)
                   and obj.__mro__[1] is not object and "__doc__" not in vars(obj)):
        return None
    if not isinstance(obj, type | type(sys)) and not callable(obj):
        return None  # a constant: documented by its comment
    return inspect.cleandoc(doc)


def constant_comment(module: Any, name: str) -> str:
    """The comment beside (or just above) ``NAME = ...`` in ``module``'s source."""
    try:
        src = inspect.getsource(module).splitlines()
    except (OSError, TypeError):
        return ""
    for i, line in enumerate(src):
        if re.match(rf"{re.escape(name)}\s*(:[^=]*)?=", line):
            return comment_at(src, i, i)
    return ""


def members(cls: type) -> list[str]:
    """A class's attributes (from its source, with their comments) and its public methods
    and properties (with their docstrings), in the order written."""
    out = []
    attrs = attribute_comments(cls)
    if attrs:
        out.append("| attribute | as written | what |\n|---|---|---|")
        for name, (written, comment) in attrs.items():
            cells = [c.replace("|", "\\|") for c in (written, comment)]
            out.append(f"| `{name}` | `{cells[0]}` | {cells[1]} |")
        out.append("")
    for name, value in vars(cls).items():
        if name.startswith("_") or name in attrs:
            continue
        fn = value.fget if isinstance(value, property) else value
        if isinstance(fn, staticmethod | classmethod):
            fn = fn.__func__
        if not inspect.isfunction(fn):
            continue
        head = f"`{name}`" if isinstance(value, property) else f"`{signature(name, fn)}`"
        doc = inspect.getdoc(fn)
        body = markdown(doc) if doc else "(no description)"
        out.append(f"- {head}" + (" (property)" if isinstance(value, property) else "") + ": "
                   + textwrap.indent(body, "  ").lstrip())
    return out


def entry(name: str, module_name: str) -> list[str]:
    module = import_module(module_name)
    obj = getattr(module, name)
    if isinstance(obj, type(sys)):
        doc = inspect.getdoc(obj) or ""
        return [f"### module `{name}`", "", markdown(doc.split("\n\n")[0]), ""]
    if isinstance(obj, type):
        error = issubclass(obj, BaseException)
        sort = "exception" if error else "dataclass" if dataclasses.is_dataclass(obj) else \
            "protocol" if getattr(obj, "_is_protocol", False) else "class"
        head = f"### {sort} `{name}`"
        lines = [head, "", f"*from `{obj.__module__}`*", ""]
        doc = own_doc(obj)
        lines += [markdown(doc) if doc else "(no description)", ""]
        if not error:
            lines += members(obj) + [""]
        return lines
    if callable(obj):
        doc = own_doc(obj) if not type(obj).__module__.startswith("pluggy") else \
            inspect.getdoc(type(obj))
        shown = signature(name, obj) if inspect.isfunction(obj) else name
        home = obj.__module__ if inspect.isfunction(obj) else module_name
        return [f"### `{shown}`", "", f"*from `{home}`*",
                "", markdown(doc) if doc else "(no description)", ""]
    comment = constant_comment(module, name)
    return [f"### `{name} = {obj!r}`", "", f"*from `{module_name}`*", "",
            comment or "(no description)", ""]


def render() -> str:
    from compressbench import api

    lines = [HEADER]
    lines.append("## Contents\n")
    for title, _, modules in api.SECTIONS:
        names = ", ".join(f"`{n}`" for names in modules.values() for n in names)
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        lines.append(f"- [{title}](#{anchor}): {names}")
    lines.append(f"- modules: {', '.join(f'`{m}`' for m in api._MODULES)}\n")
    for title, intro, modules in api.SECTIONS:
        lines += [f"## {title}", "", markdown(intro), ""]
        for module_name, names in modules.items():
            for name in names:
                lines += entry(name, module_name)
    lines += ["## Modules", ""]
    for name, module_name in api._MODULES.items():
        lines += [f"### module `{name}`", "", f"*`{module_name}`*", "",
                  markdown((inspect.getdoc(import_module(module_name)) or "").split("\n\n")[0]),
                  ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def undocumented() -> list[str]:
    """Public names (and public methods of public classes) without documentation."""
    from compressbench import api

    missing = []
    for _, _, modules in api.SECTIONS:
        for module_name, names in modules.items():
            module = import_module(module_name)
            for name in names:
                obj = getattr(module, name)
                if isinstance(obj, type | type(sys)) or callable(obj):
                    pluggy = type(obj).__module__.startswith("pluggy")
                    if not pluggy and not own_doc(obj):
                        missing.append(name)
                elif not constant_comment(module, name):
                    missing.append(name)
                if isinstance(obj, type) and not issubclass(obj, BaseException):
                    for attr, value in vars(obj).items():
                        fn = value.fget if isinstance(value, property) else value
                        if isinstance(fn, staticmethod | classmethod):
                            fn = fn.__func__
                        if not attr.startswith("_") and inspect.isfunction(fn) and \
                                not inspect.getdoc(fn):
                            missing.append(f"{name}.{attr}")
    return missing


if __name__ == "__main__":
    sys.stdout.write(render())
