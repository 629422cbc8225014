"""The run directory's layout: every path inside it is built here, and checked to stay inside.

Names that become file names (task names, method labels) are restricted to a safe character
set when a suite is read (:func:`name_problem`); paths built from records read back from a run
directory someone else made go through :func:`inside` as well, so neither a hostile suite nor a
hostile ``results.jsonl`` can make compressbench read or write outside the run directory.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

from compressbench.errors import CompressBenchError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
SEP = "__"  # between task, label and seed in file names; so it may not occur inside a name

RESULTS = "results.jsonl"
PREDICTIONS = "predictions"
REFERENCES = "references"
MODELS = "models"
PLOTS = "plots"
LOCK = ".lock"
MEASURE_LOCK = ".measure.lock"  # held by the local executor's worker that is measuring


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a task name or method label, or None when it can."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return ("use 1-100 letters, digits, '.', '_', '+' or '-', starting with a letter or "
                "digit (it becomes part of file names)")
    if SEP in name:
        return f"'{SEP}' separates task, label and seed in file names; use one '_' or '-'"
    return None


def inside(run_dir: Path, *parts: str) -> Path:
    """``run_dir / parts``, refused when it would resolve outside ``run_dir``. The path is
    returned unresolved (below the resolved run directory), so a writer sees a planted link
    itself and refuses it (:mod:`compressbench.safefs`)."""
    root = Path(run_dir).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise CompressBenchError(f"{run_dir}: refusing the path {'/'.join(parts)!r}, which "
                                 f"leads outside the run directory")
    return root.joinpath(*parts)


def job_slug(job_id: str) -> str:
    """``task/label/seedN`` -> ``task__label__seedN`` (one path component)."""
    parts = job_id.split("/")
    if len(parts) != 3 or any(not p or p in (".", "..") for p in parts):
        raise CompressBenchError(f"job id {job_id!r} is not task/label/seedN")
    return SEP.join(parts)


def model_dir(run_dir: Path, job_id: str) -> Path:
    return inside(run_dir, MODELS, job_slug(job_id))


def predictions_file(run_dir: Path, job_id: str) -> Path:
    return inside(run_dir, PREDICTIONS, f"{job_slug(job_id)}.json")


def references_file(run_dir: Path, task: str) -> Path:
    return inside(run_dir, REFERENCES, f"{task}.json")


def plot_file(run_dir: Path, task: str, axis: str, ext: str) -> Path:
    return inside(run_dir, PLOTS, f"{task}-{axis}.{ext}")


@contextlib.contextmanager
def lock(run_dir: Path):
    """Hold the run directory for one ``compressbench run`` at a time (an advisory ``flock``,
    released by the kernel when the process ends, even by ``kill -9``)."""
    import fcntl
    import os

    from compressbench import safefs

    run_dir = safefs.make_dir(Path(run_dir))
    fd = safefs.open_rw(run_dir / LOCK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise CompressBenchError(
                f"{run_dir}: another compressbench run is using this run directory ({holder}); "
                f"wait for it to finish, or give this run another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield run_dir
    finally:
        os.close(fd)  # closing the descriptor releases the lock
