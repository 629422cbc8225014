"""Integrity of the model cache: a manifest of every file's size and sha256, checked on reuse.

A cached model is reused by later jobs, runs and run directories (which hard-link its files).
``seal`` writes ``manifest.json`` once the folder is complete and makes its files read-only, so
an in-place write from a run directory fails instead of changing the cache under every other
run (as root, the mode bits do not stop a write; the manifest check then catches it). ``check``
says what is wrong with a folder, and the runner rebuilds it with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from compressbench import safefs

MANIFEST = "manifest.json"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != MANIFEST)


def seal(folder: Path) -> None:
    """Write the manifest, then make every file in ``folder`` read-only."""
    folder = Path(folder)
    entries = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size,
                                                  "sha256": file_digest(p)}
               for p in files_of(folder)}
    safefs.write_atomic(folder / MANIFEST, json.dumps(entries, indent=1, sort_keys=True))
    read_only(*files_of(folder), folder / MANIFEST)


def read_only(*paths: Path) -> None:
    for p in paths:
        p.chmod(stat.S_IMODE(p.stat().st_mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def differs(path: Path, size: int, sha256: str) -> str | None:
    """How ``path`` differs from the recorded size and digest, or None."""
    if path.stat().st_size != size:
        return f"{path.name} has {path.stat().st_size} bytes, {size} were recorded"
    return None if file_digest(path) == sha256 else f"{path.name} was modified (sha256 differs)"


def check(folder: Path) -> str | None:
    """None when ``folder`` matches its manifest; else what differs (first problem found)."""
    folder = Path(folder)
    try:
        entries = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"{MANIFEST} is missing or unreadable"
    link = next((p for p in Path(folder).rglob("*") if p.is_symlink()), None)
    if link is not None:
        return f"{link.relative_to(folder).as_posix()} is a symbolic link"
    present = {p.relative_to(folder).as_posix() for p in files_of(folder)}
    for name, want in sorted(entries.items()):
        if name not in present:
            return f"{name} is missing"
        problem = differs(folder / name, want["size"], want["sha256"])
        if problem:
            return problem
    extra = sorted(present - set(entries))
    return f"{extra[0]} is not in the manifest" if extra else None


def seal_file(tmp: Path, path: Path) -> None:
    """Move a finished single cache file into place with its digest beside it
    (``<name>.sha256``), both read-only; the digest is written first, so a file without one
    was never finished."""
    digest = path.with_name(path.name + ".sha256")
    digest.unlink(missing_ok=True)
    safefs.write_atomic(digest, f"{Path(tmp).stat().st_size} {file_digest(tmp)}\n")
    safefs.refuse_link(path)
    os.replace(tmp, path)
    read_only(path, digest)


def check_file(path: Path) -> str | None:
    """None when ``path`` matches the digest :func:`seal_file` wrote; else what differs."""
    try:
        size, want = Path(str(path) + ".sha256").read_text().split()
    except (OSError, ValueError):
        return "its .sha256 is missing or unreadable"
    return differs(Path(path), int(size), want)
