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

from compressbench import rundir, safefs
from compressbench.errors import CompressBenchError
from compressbench.rundir import RESULTS

REJECTED = "results.rejected.jsonl"
CONTROLS = "controls.jsonl"  # the second latency control, re-timed at the end of a run


def append(run_dir: Path, record) -> None:
    """Append ``record`` (a :class:`compressbench.record.Record`; a dict is typed through it
    first) as one line, fsynced."""
    from compressbench.record import Record

    try:
        typed = record if isinstance(record, Record) else Record.from_dict(record)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CompressBenchError(f"not writing a malformed record ({type(exc).__name__}: "
                                 f"{exc})") from None
    out = typed.to_dict()
    problem = record_problem(out)  # what read() would set aside is never written
    if problem:
        raise CompressBenchError(f"not writing a malformed record of {out.get('job_id')!r}: "
                                 f"{problem}")
    safefs.make_dir(run_dir)
    line = (json.dumps(out, sort_keys=True, default=str) + "\n").encode()
    drop_torn_tail(run_dir / RESULTS)
    fd = safefs.open_append(run_dir / RESULTS)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_torn_tail(path: Path) -> None:
    """A crash in the middle of a write leaves a last line without its newline; appending to it
    would glue the next record onto it and lose both. Cut it off (it is unreadable anyway)."""
    safefs.refuse_link(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with os.fdopen(safefs.open_rw(path), "rb+") as f:
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
    """Every well-formed record of ``run_dir``'s results log, in order. A line that is not
    one (invalid UTF-8 or JSON, not an object, missing or mistyped fields) is set aside: kept
    in ``results.rejected.jsonl`` beside it and warned about with its line number, never fatal;
    its job runs again on resume. A torn last line (a kill during a write) is skipped too."""
    path = Path(run_dir) / RESULTS
    safefs.refuse_link(path)
    if not path.is_file():
        return []
    records, rejected = [], []
    content = safefs.read_bytes(path)
    lines = content.split(b"\n")
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if lineno == len(lines):  # no newline after it: a write cut short by a kill
            print(f"compressbench: {path}:{lineno}: skipping a torn last record (interrupted "
                  f"write); its job runs again", file=sys.stderr)
            continue
        problem, record = parse_record(raw)
        if problem is None:
            records.append(record)
        else:
            rejected.append(raw)
            print(f"compressbench: warning: {path}:{lineno}: setting aside a malformed record "
                  f"({problem}); kept in {REJECTED}, its job runs again on resume",
                  file=sys.stderr)
    if rejected:
        set_aside(Path(run_dir), rejected)
    return records


def parse_record(raw: bytes) -> tuple[str | None, dict | None]:
    """(None, record) for a well-formed line of the log, else (why not, None)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}", None
    try:
        record = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc.msg}", None
    problem = record_problem(record)
    return (problem, None) if problem else (None, record)


STRINGS = ("job_id", "key", "task", "label", "status")
DICTS = ("metrics", "model", "measure", "env", "data", "setting")


def record_problem(record) -> str | None:
    """Why ``record`` is not a result record compressbench wrote, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for name in STRINGS:
        value = record.get(name)
        if not isinstance(value, str) or not value:
            return f"'{name}' is missing or not a string"
        if "\x00" in value or any(ord(c) < 32 for c in value):
            return f"'{name}' holds control characters"
    try:
        rundir.job_slug(record["job_id"])
    except Exception:
        return "'job_id' is not task/label/seedN"
    if not isinstance(record.get("seed", 0), int) or isinstance(record.get("seed"), bool):
        return "'seed' is not an integer"
    for name in DICTS:
        if record.get(name) is not None and not isinstance(record[name], dict):
            return f"'{name}' is not an object"
    for name in ("score", "wall_s"):
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"'{name}' is not a number"
    main = (record.get("metrics") or {}).get(record.get("main_metric"))
    if main is not None and (isinstance(main, bool) or not isinstance(main, int | float)):
        return "its main metric is not a number"
    if record.get("model_dir") is not None and not isinstance(record["model_dir"], str):
        return "'model_dir' is not a string"
    if record.get("steps") is not None and not (
            isinstance(record["steps"], list) and all(isinstance(s, dict) for s in record["steps"])):
        return "'steps' is not a list of objects"
    try:
        from compressbench.record import Record
        Record.from_dict(record)
    except Exception as exc:  # any other field of the wrong shape
        return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def set_aside(run_dir: Path, lines: list[bytes]) -> None:
    """Append the rejected lines (not yet there) to ``results.rejected.jsonl``."""
    path = run_dir / REJECTED
    try:
        safefs.refuse_link(path)
        known = set(safefs.read_bytes(path).split(b"\n")) if path.is_file() else set()
        new = [line for line in dict.fromkeys(lines) if line not in known]
        if not new:
            return
        fd = safefs.open_append(path)
        try:
            os.write(fd, b"".join(line + b"\n" for line in new))
        finally:
            os.close(fd)
    except (OSError, CompressBenchError) as exc:  # read-only run directory: warn only
        print(f"compressbench: warning: {path}: cannot keep the rejected records ({exc})",
              file=sys.stderr)


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
    body = {"task": task.name, "kind": task.kind.name, "labels": list(task.labels),
            "splits": {split: {"a": [ex.text_a for ex in exs], "b": [ex.text_b for ex in exs],
                               "label": [ex.label for ex in exs]}
                       for split, exs in evals.items()}}
    return safefs.write_atomic(path, json.dumps(body))


def read_references(run_dir: Path, task: str) -> dict | None:
    return read_json(rundir.references_file(run_dir, task))


def read_predictions(run_dir: Path, job_id: str) -> dict | None:
    return read_json(rundir.predictions_file(run_dir, job_id))


def read_json(path: Path) -> dict | None:
    """A JSON object compressbench wrote into the run directory; None when it is missing or
    unreadable (warned: a damaged file costs its analysis, never the report)."""
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, OSError) as exc:
        print(f"compressbench: warning: {path}: unreadable, ignored ({type(exc).__name__})",
              file=sys.stderr)
        return None
    return body if isinstance(body, dict) else None


def append_control(run_dir: Path, control: dict) -> None:
    """Append one re-timed control pair (see :func:`compressbench.runner.retime_controls`)."""
    fd = safefs.open_append(Path(run_dir) / CONTROLS)
    try:
        os.write(fd, (json.dumps(control, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_controls(run_dir: Path) -> list[dict]:
    """The control pairs of a run, the last one per task (a resumed run re-times them)."""
    path = Path(run_dir) / CONTROLS
    if not path.is_file() or path.is_symlink():
        return []
    out: dict[str, dict] = {}
    for line in path.read_bytes().splitlines():
        try:
            c = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue  # a torn or foreign line: the control is advisory
        if isinstance(c, dict) and isinstance(c.get("task"), str):
            out[c["task"]] = c
    return list(out.values())
