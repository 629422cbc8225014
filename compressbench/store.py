"""A results store for many runs: ``compressbench index PATH... --db results.db``.

Every run directory found under the given paths (a folder with ``results.jsonl``) goes into one
SQLite file (the standard library's ``sqlite3``; any SQLite client reads it). Re-indexing a run
replaces its rows, so the file follows the runs as they resume. The tables:

``runs``
    ``run_dir`` (absolute path, the key), ``suite``, ``suite_sha256``, ``jobs``, ``indexed_at``
``records``
    one row per job (its latest record): ``run_dir``, ``job_id``, ``task``, ``label``, ``seed``,
    ``status``, ``teacher``, ``main_metric``, ``score``, ``parameters``, ``size_bytes``,
    ``wall_s``, ``started_at``, ``key``, ``cpu``, ``record`` (the whole record, JSON)
``measurements``
    one row per job and backend: ``run_dir``, ``job_id``, ``backend``, ``status``, ``reason``,
    ``p50_ms``, ``p90_ms``, ``vs_eager``, ``vs_eager_low``, ``vs_eager_high``, ``peak_rss_mb``

For example ``SELECT label, avg(score) FROM records WHERE task = 'sst2' GROUP BY label``, and
``compressbench compare --db results.db --suite glue`` reports over every indexed run of a
suite. Records are read as ``compressbench report`` reads them (malformed lines set aside with a
warning); nothing in a run directory is executed.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from compressbench import results, rundir
from compressbench.record import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_dir TEXT PRIMARY KEY, suite TEXT, suite_sha256 TEXT,
    jobs INTEGER, indexed_at TEXT);
CREATE TABLE IF NOT EXISTS records (run_dir TEXT, job_id TEXT, task TEXT, label TEXT,
    seed INTEGER, status TEXT, teacher TEXT, main_metric TEXT, score REAL, parameters INTEGER,
    size_bytes INTEGER, wall_s REAL, started_at TEXT, key TEXT, cpu TEXT, record TEXT,
    PRIMARY KEY (run_dir, job_id));
CREATE TABLE IF NOT EXISTS measurements (run_dir TEXT, job_id TEXT, backend TEXT,
    status TEXT, reason TEXT, p50_ms REAL, p90_ms REAL, vs_eager REAL, vs_eager_low REAL,
    vs_eager_high REAL, peak_rss_mb REAL, PRIMARY KEY (run_dir, job_id, backend));
"""


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories at or below ``paths`` (not following symbolic links)."""
    import os

    found = []
    for path in paths:
        path = Path(path)
        if (path / rundir.RESULTS).is_file():
            found.append(path)
            continue
        for root, dirs, files in os.walk(path, followlinks=False):
            if rundir.RESULTS in files:
                found.append(Path(root))
                dirs[:] = []  # a run directory's own folders hold no runs
    return sorted({p.resolve() for p in found})


def index(paths: list[Path], db: Path) -> int:
    """Put every run directory under ``paths`` into ``db``; returns how many."""
    runs = find_runs(paths)
    con = sqlite3.connect(db)
    try:
        con.executescript(SCHEMA)
        for run in runs:
            latest = [Record.from_dict(r) for r in results.latest(results.read(run)).values()]
            key = str(run)
            with con:
                for table in ("runs", "records", "measurements"):
                    con.execute(f"DELETE FROM {table} WHERE run_dir = ?", (key,))
                suite = next((r for r in latest if r.suite), None)
                con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                            (key, suite.suite if suite else None,
                             suite.suite_sha256 if suite else None, len(latest),
                             time.strftime("%Y-%m-%dT%H:%M:%S%z")))
                for r in latest:
                    con.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                                "?, ?, ?, ?, ?)", (
                                    key, r.job_id, r.task, r.label, r.seed, r.status, r.teacher,
                                    r.main_metric, r.score,
                                    r.model.parameters if r.model else None,
                                    r.model.size_bytes if r.model else None, r.wall_s,
                                    r.started_at, r.key, (r.env or {}).get("cpu"),
                                    json.dumps(r.to_dict(), default=str)))
                    for name, b in r.backends.items():
                        v = b.vs_eager
                        ci = v.ci95 if v is not None and v.ci95 else (None, None)
                        con.execute("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                                    "?, ?, ?)", (
                                        key, r.job_id, name, b.status, b.reason,
                                        b.latency_ms.p50 if b.latency_ms else None,
                                        b.latency_ms.p90 if b.latency_ms else None,
                                        v.speedup if v is not None else None, ci[0], ci[1],
                                        b.peak_rss_mb))
    finally:
        con.close()
    return len(runs)


def run_dirs(db: Path, suite: str) -> list[Path]:
    """The indexed run directories of ``suite``, in the order they were indexed."""
    from compressbench.errors import CompressBenchError

    if not Path(db).is_file():
        raise CompressBenchError(f"--db {db}: no such file (make it with compressbench index)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT run_dir FROM runs WHERE suite = ? ORDER BY indexed_at, "
                           "run_dir", (suite,)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise CompressBenchError(f"--db {db}: not a compressbench index ({exc})") from None
    finally:
        con.close()
    if not rows:
        raise CompressBenchError(f"--db {db}: no run of suite '{suite}' is indexed")
    return [Path(r[0]) for r in rows]
