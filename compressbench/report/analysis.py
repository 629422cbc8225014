"""Error analysis per method, from the predictions and gold references a run saved.

For each task the run wrote ``references/<task>.json`` (texts and gold labels of the reported
splits) and ``predictions/<job>.json`` (one prediction per example). This module compares each
method with the gold labels and with the teacher of the same seed:

- classification: per-class precision / recall / F1 and a confusion matrix;
- CoNLL-style token tasks: per-entity-type precision / recall / F1 (seqeval) and a confusion
  matrix of entity types per word (B-/I- merged);
- regression: mean absolute error per band of the gold score;
- and a sample of examples the teacher gets right and the method gets wrong.

Before anything is shown the main metric is recomputed from these files and compared with the
record, so a stale or mismatched prediction file is reported, never analysed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from compressbench import kinds, results
from compressbench.kinds.analysis import (  # noqa: F401 (the report's types)
    CLOSE,
    FAR,
    Band,
    ClassStats,
    class_stats,
    entity_stats,
    prf,
    regression_bands,
    same_entities,
)
from compressbench.report.summary import TEACHER, RunSummary, TaskTable


@dataclass
class MethodErrors:
    label: str
    seed: int
    per_class: list[ClassStats]  # empty for regression
    bands: list[Band]  # regression only
    confusion: list[list[int]] | None  # rows: gold, columns: predicted, in ``classes`` order
    flips: int  # examples the teacher gets right and this method gets wrong
    rescues: int  # the reverse
    examples: list[dict] = field(default_factory=list)  # text, gold, teacher, method


@dataclass
class TaskErrors:
    task: str
    kind: str
    split: str
    n: int
    classes: list[str]  # confusion-matrix order
    methods: list[MethodErrors]
    note: str = ""  # why some or all methods are missing


def analyse(summary: RunSummary, examples: int = 3) -> list[TaskErrors]:
    out = []
    by_job = {r.job_id: r for r in summary.records if r.ok}
    for table in summary.tables:
        refs = results.read_references(summary.run_dir, table.task)
        if refs is None:
            out.append(TaskErrors(table.task, table.kind, "", 0, [], [],
                                  f"no references/{table.task}.json in the run directory "
                                  f"(runs before compressbench 0.2 did not save them); "
                                  f"`compressbench report RUN_DIR --data-dir DIR` rebuilds it"))
            continue
        out.append(analyse_task(summary, table, refs, by_job, examples))
    return out


def analyse_task(summary: RunSummary, table: TaskTable, refs: dict, by_job: dict,
                 n_examples: int) -> TaskErrors:
    split = next(iter(refs["splits"]))
    gold_split = refs["splits"][split]
    gold, kind, labels = gold_split["label"], refs["kind"], refs["labels"]
    classes = class_names(kind, labels)
    errors = TaskErrors(table.task, kind, split, len(gold), classes, [])
    skipped = []
    teacher: list | None = None  # the teacher's predictions, once checked (it runs one seed)
    for row in table.rows:  # the teacher first
        seed = row.seeds[0]
        job_id = f"{table.task}/{row.label}/seed{seed}"
        record = by_job.get(job_id)
        preds = (results.read_predictions(summary.run_dir, job_id) or {}).get(split)
        if record is None or preds is None or len(preds) != len(gold):
            skipped.append(f"{row.label} (no predictions for {split})")
            continue
        found, got = method_errors(row.label, seed, kind, labels, gold_split, preds, teacher,
                                   n_examples)
        if abs(got - recorded(kind, record, got)) > 1e-6:
            skipped.append(f"{row.label} (predictions do not reproduce the recorded metric)")
            continue
        if row.label == TEACHER:
            teacher = preds
        errors.methods.append(found)
    if skipped:
        errors.note = "not analysed: " + "; ".join(skipped)
    return errors


def class_names(kind, labels: list[str]) -> list[str]:
    return kinds.get(kind).class_names(labels)


def recorded(kind, record, default: float) -> float:
    """The record's value of the metric the analysis recomputes (the kind's
    ``checked_metric``: accuracy, Pearson, entity F1), or ``default`` where the task did not
    report it."""
    name = kinds.get(kind).checked_metric
    return next((v for k, v in record.metrics.items()
                 if k == name or k.startswith(f"{name}_")), default)


def method_errors(label: str, seed: int, kind, labels: list[str], gold_split: dict,
                  preds: list, teacher: list | None,
                  n_examples: int) -> tuple[MethodErrors, float]:
    """The analysis of one method's predictions, and the metric it recomputed (see
    ``recorded``)."""
    kind = kinds.get(kind)
    gold = gold_split["label"]
    e = kind.errors(gold, preds, teacher, labels)
    flips = rescues = 0
    chosen: list[int] = []
    if teacher is not None and label != TEACHER:
        flipped = [i for i in range(len(gold)) if e["t_right"][i] and e["wrong"][i]]
        flips = len(flipped)
        rescues = sum(1 for i in range(len(gold)) if e["t_wrong"][i] and e["right"][i])
        chosen = sorted(random.Random(seed).sample(flipped, min(n_examples, len(flipped))))
    shown = [kind.example(labels, gold_split["a"][i], gold_split["b"][i], gold[i], teacher[i],
                          preds[i]) for i in chosen]
    return MethodErrors(label, seed, e["per_class"], e["bands"], e["confusion"], flips, rescues,
                        shown), e["got"]
