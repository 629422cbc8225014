"""One report over several run directories: ``compressbench compare RUN_A RUN_B ...``.

A new plugin's run against a stored baseline run, or two machines' runs of one suite: the
records, predictions and references of every run go into one new run directory, where the
report compares them with the same paired statistics it uses inside a run (the predictions are
on the same examples). That only means something when the runs scored the same examples with
the same teacher on the same data, so the merge refuses, naming the runs and what differs,
when a shared task's reported split (texts or gold labels), its data fingerprint or its
teacher's cache key differ.

A label that two runs both use for different models gets the run's name as a prefix
(``RUN_B.kd-3L``) in the merged run; the same models (the same cache keys) are kept once, as
the first run measured them. The teacher
of each task comes from the first run that has it. Latency measured in different runs comes
from different sessions (the report says so and compares timings only within one).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from compressbench import results, rundir, safefs
from compressbench.errors import CompressBenchError
from compressbench.record import Record

TEACHER = "teacher"


def fingerprint(run_dir: Path, task: str) -> str | None:
    """A digest of the task's reported split(s) as the run kept them (texts and gold labels)."""
    refs = results.read_references(run_dir, task)
    if refs is None:
        return None
    body = json.dumps({"labels": refs.get("labels"), "splits": refs.get("splits")},
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def check_comparable(runs: list[Path], latest: list[dict[str, dict]]) -> None:
    """Refuse runs whose shared tasks were not scored on the same examples, data and teacher."""
    tasks: dict[str, list[int]] = {}
    for i, recs in enumerate(latest):
        for r in recs.values():
            tasks.setdefault(r["task"], [])
            if i not in tasks[r["task"]]:
                tasks[r["task"]].append(i)
    for task, where in tasks.items():
        if len(where) < 2:
            continue
        first = where[0]
        for i in where[1:]:
            a, b = runs[first], runs[i]
            fa, fb = fingerprint(a, task), fingerprint(b, task)
            if fa is None or fb is None:
                missing = a if fa is None else b
                raise CompressBenchError(
                    f"{missing}: no references/{task}.json, so its {task} examples cannot be "
                    f"checked against the other runs'; re-render it with `compressbench report "
                    f"{missing} --data-dir DIR` first")
            if fa != fb:
                raise CompressBenchError(
                    f"{a} and {b} scored {task} on different examples (their reported splits "
                    f"differ: texts, gold labels or their number); a comparison needs the same "
                    f"examples")
            ta, tb = teacher_of(latest[first], task), teacher_of(latest[i], task)
            if ta is None or tb is None:
                continue  # the data and teacher are read off the teachers' records
            for what, value, named, why in (
                    ("data", data_fingerprint, "fingerprint", "the training data differ"),
                    ("teacher", model_key, "cache key",
                     "the teachers were fine-tuned differently")):
                va, vb = value(ta), value(tb)
                if va and vb and va != vb:
                    raise CompressBenchError(
                        f"{a} and {b}: their {task} {what} differs ({what} {named} {va} vs "
                        f"{vb}): {why}, so their methods are not compared on equal footing")


def data_fingerprint(record: dict) -> str | None:
    return (record.get("data") or {}).get("fingerprint")


def model_key(record: dict) -> str | None:
    """The cache key of the record's model (its ``cache_dir``'s name; the record's own ``key``
    also covers the measurement settings)."""
    folder = record.get("cache_dir")
    return Path(folder).name if isinstance(folder, str) and folder else None


def teacher_of(recs: dict[str, dict], task: str) -> dict | None:
    return next((r for r in recs.values() if r["task"] == task and r.get("label") == TEACHER
                 and r.get("status") == "ok"), None)


def merge(runs: list[Path], out: Path, force: bool = False) -> Path:
    """Write the merged run directory ``out`` (records, predictions, references; no models)."""
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise CompressBenchError("compare: give two or more run directories")
    for run in runs:
        if not (run / rundir.RESULTS).is_file():
            raise CompressBenchError(f"{run}: not a run directory (no {rundir.RESULTS})")
    latest = [results.latest(results.read(run)) for run in runs]
    check_comparable(runs, latest)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise CompressBenchError(f"--output {out}: exists and is not empty; choose another "
                                     f"or pass --force")
        shutil.rmtree(out)
    safefs.make_dir(out)
    kept: dict[str, dict] = {}  # merged job id -> record
    for run, name, recs in zip(runs, unique_names(runs), latest):
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in recs.values():
            groups.setdefault((r["task"], r.get("label", "")), []).append(r)
        for (task, label), group in groups.items():
            there = [k for k, x in kept.items() if x["task"] == task and x["label"] == label]
            if label == TEACHER and there:
                continue  # one teacher per task: the first run's (the same key: checked)
            if there and all(model_key(kept.get(r["job_id"], {})) == model_key(r) is not None
                             for r in group):
                continue  # the same models in both runs (measured in the first)
            new_label = f"{name}.{label}" if there else label  # a different method, same label
            for r in group:
                new_id = f"{task}/{new_label}/seed{r.get('seed')}"
                copy_predictions(run, r["job_id"], out, new_id)
                kept[new_id] = {**r, "job_id": new_id, "label": new_label, "model_dir": None,
                                "compared_from": str(run)}
    for task in {r["task"] for r in kept.values()}:
        source = next(run for run, recs in zip(runs, latest)
                      if any(x["task"] == task for x in recs.values()))
        refs = results.read_references(source, task)
        if refs is not None:
            safefs.write_atomic(rundir.references_file(out, task), json.dumps(refs))
    for r in kept.values():
        results.append(out, Record.from_dict(r))
    lines = ["# compressbench compare: the runs merged here"] + [f"#   {run}" for run in runs]
    safefs.write_atomic(out / "suite.yaml", "\n".join(lines) + "\n")
    return out


def unique_names(runs: list[Path]) -> list[str]:
    """A short, file-name-safe name per run (its folder name; numbered when they repeat)."""
    import re

    out = []
    for i, run in enumerate(runs):
        name = re.sub(r"[^A-Za-z0-9._+-]+", "-", run.resolve().name).strip("-.") or f"run{i}"
        name = name[:40]
        while name in out:
            name = f"{name}-{i}"
        out.append(name)
    return out


def copy_predictions(run: Path, job_id: str, out: Path, new_id: str) -> None:
    preds = results.read_predictions(run, job_id)
    if preds is not None:
        safefs.write_atomic(rundir.predictions_file(out, new_id), json.dumps(preds))
