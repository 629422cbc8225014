"""The append-only results store: one JSON line per finished job, written atomically.

Each record is written with a single ``write`` on a file opened with O_APPEND, then fsync'ed,
so a crash or Ctrl-C loses at most the job that was running. A torn last line (a kill during
the write) is ignored on reading.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from compressbench import rundir
from compressbench.rundir import RESULTS


def append(run_dir: Path, record: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    drop_torn_tail(run_dir / RESULTS)
    fd = os.open(run_dir / RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_torn_tail(path: Path) -> None:
    """A crash in the middle of a write leaves a last line without its newline; appending to it
    would glue the next record onto it and lose both. Cut it off (it is unreadable anyway)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        content = f.read()
        keep = content.rfind(b"\n") + 1  # 0 when the only line is torn
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    print(f"compressbench: warning: {path}: dropped a torn last record ({len(content) - keep} "
          f"bytes, from a crash during a write); its job will run again", file=sys.stderr)


def read(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"compressbench: {path}:{lineno}: skipping an unreadable record "
                      f"(interrupted write?)", file=sys.stderr)
    return records


def latest(records: list[dict]) -> dict[str, dict]:
    """The last record of each job id (a re-run job supersedes its failed attempt)."""
    out: dict[str, dict] = {}
    for r in records:
        out[r["job_id"]] = r
    return out


def finished(run_dir: Path, records: list[dict] | None = None) -> dict[str, str]:
    """job id -> key, for jobs whose latest record succeeded (``records``: already read)."""
    records = read(run_dir) if records is None else records
    return {j: r["key"] for j, r in latest(records).items() if r.get("status") == "ok"}


def model_path(run_dir: Path, record: dict) -> Path:
    """The folder of a record's model, which must lie inside the run directory."""
    return rundir.inside(run_dir, str(record["model_dir"]))


REFERENCES = rundir.REFERENCES


def write_references(run_dir: Path, task, evals: dict) -> Path:
    """The gold labels and texts of a task's reported splits, next to the predictions, so a
    report can analyse errors without the data directory. ``evals``: split -> examples."""
    path = rundir.references_file(run_dir, task.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"task": task.name, "kind": task.kind, "labels": list(task.labels),
            "splits": {split: {"a": [ex.text_a for ex in exs], "b": [ex.text_b for ex in exs],
                               "label": [ex.label for ex in exs]}
                       for split, exs in evals.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body), encoding="utf-8")
    tmp.replace(path)
    return path


def read_references(run_dir: Path, task: str) -> dict | None:
    path = rundir.references_file(run_dir, task)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_predictions(run_dir: Path, job_id: str) -> dict | None:
    path = rundir.predictions_file(run_dir, job_id)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
