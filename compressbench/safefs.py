"""Files compressbench creates or appends to, written without following planted symlinks.

A run directory or cache may come from someone else (a colleague's tarball, a shared disk), so
every file compressbench writes inside one is treated as possibly planted: a symlink where a
file should be is refused with a one-line error, never written through.

- :func:`write_atomic`: a temporary file created exclusively (``O_CREAT | O_EXCL |
  O_NOFOLLOW``, a random name) in the target's folder, then renamed over the target; a
  planted ``*.tmp`` link is never opened, and a planted link at the target is refused.
- :func:`open_append` / :func:`open_rw`: ``O_NOFOLLOW`` opens for the results log and locks.
- :func:`read_bytes`: reads a file that must not be a symlink (the results log).
- :func:`make_dir`: a folder that must not be a symlink.
"""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from compressbench.errors import CompressBenchError


def refuse_link(path: Path, what: str = "file") -> None:
    """One-line error when ``path`` is a symlink (where compressbench keeps a real file)."""
    if os.path.islink(path):
        raise CompressBenchError(
            f"{path}: is a symbolic link where compressbench keeps a {what}; refusing to follow "
            f"it (remove the link, or use another run directory)")


def make_dir(path: Path) -> Path:
    """``mkdir -p`` for a folder compressbench owns; a symlink in its place is refused."""
    path = Path(path)
    refuse_link(path, "folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _open_nofollow(path: Path, flags: int, mode: int) -> int:
    refuse_link(path)
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link planted between the check and the open
            refuse_link(path)
            raise CompressBenchError(f"{path}: is a symbolic link; refusing to follow it") \
                from None
        raise


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` by ``data`` atomically, never writing through a symlink."""
    path = Path(path)
    refuse_link(path)
    make_dir(path.parent)
    body = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = _open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # rename replaces a link itself, never its target
    except BaseException:
        with_suppressed_unlink(tmp)
        raise
    return path


def with_suppressed_unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def open_append(path: Path, mode: int = 0o644) -> int:
    """A descriptor appending to ``path`` (created if missing), refused through a symlink."""
    return _open_nofollow(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)


def open_rw(path: Path, mode: int = 0o644) -> int:
    """A read-write descriptor on ``path`` (created if missing, not truncated), for locks."""
    return _open_nofollow(Path(path), os.O_RDWR | os.O_CREAT, mode)


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, refused when it is a symlink."""
    fd = _open_nofollow(Path(path), os.O_RDONLY, 0)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
