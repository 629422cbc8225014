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

from compressbench import results
from compressbench.report.summary import TEACHER, RunSummary, TaskTable

CLOSE, FAR = 0.5, 1.0  # regression: the teacher within CLOSE of gold, the method off by FAR


@dataclass
class ClassStats:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # examples (gold entities for token tasks)


@dataclass
class Band:
    """Regression: the examples whose gold score lies in one band."""

    name: str
    n: int
    mae: float  # mean absolute error
    bias: float  # mean signed error (prediction - gold)
    close: float  # share predicted within CLOSE of gold


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


def class_names(kind: str, labels: list[str]) -> list[str]:
    if kind == "token":
        types = sorted({t[2:] for t in labels if t[:2] in ("B-", "I-")})
        return types + ["O"]
    return list(labels)


CHECKED = {"regression": "pearson", "token": "f1", "classification": "accuracy"}


def recorded(kind: str, record, default: float) -> float:
    """The record's value of the metric the analysis recomputes (Pearson, entity F1 or
    accuracy), or ``default`` where the task did not report it."""
    name = CHECKED.get(kind, "accuracy")
    return next((v for k, v in record.metrics.items()
                 if k == name or k.startswith(f"{name}_")), default)


def tags(ids: list[list[int]], labels: list[str]) -> list[list[str]]:
    return [[labels[t] for t in sent] for sent in ids]


def method_errors(label: str, seed: int, kind: str, labels: list[str], gold_split: dict,
                  preds: list, teacher: list | None,
                  n_examples: int) -> tuple[MethodErrors, float]:
    """The analysis of one method's predictions, and the metric it recomputed (see
    ``recorded``)."""
    from compressbench import metrics as M

    gold = gold_split["label"]
    if kind == "regression":
        per_class, bands, confusion = [], regression_bands(gold, preds), None
        got = M.regression(gold, preds, ["pearson"])["pearson"]
        right = [abs(p - g) <= CLOSE for g, p in zip(gold, preds)]
        wrong = [abs(p - g) >= FAR for g, p in zip(gold, preds)]
        t_right = [abs(p - g) <= CLOSE for g, p in zip(gold, teacher)] if teacher else None
        t_wrong = [abs(p - g) >= FAR for g, p in zip(gold, teacher)] if teacher else None
    else:
        bands = []
        if kind == "token":
            per_class, confusion, got = entity_stats(gold, preds, labels)
        else:
            per_class, confusion = class_stats(gold, preds, labels)
            got = sum(int(a == b) for a, b in zip(gold, preds)) / len(gold)
        same = same_entities if kind == "token" else (lambda g, p, _labels: g == p)
        right = [same(g, p, labels) for g, p in zip(gold, preds)]
        wrong = [not r for r in right]
        t_right = [same(g, p, labels) for g, p in zip(gold, teacher)] if teacher else None
        t_wrong = [not r for r in t_right] if t_right else None
    flips = rescues = 0
    chosen: list[int] = []
    if teacher is not None and label != TEACHER:
        flipped = [i for i in range(len(gold)) if t_right[i] and wrong[i]]
        flips = len(flipped)
        rescues = sum(1 for i in range(len(gold)) if t_wrong[i] and right[i])
        chosen = sorted(random.Random(seed).sample(flipped, min(n_examples, len(flipped))))
    shown = [example(kind, labels, gold_split, i, teacher[i], preds[i]) for i in chosen]
    return MethodErrors(label, seed, per_class, bands, confusion, flips, rescues, shown), got


def class_stats(gold: list[int], preds: list[int], labels: list[str]):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, n = precision_recall_fscore_support(gold, preds, labels=ids, zero_division=0)
    stats = [ClassStats(labels[i], float(p[i]), float(r[i]), float(f[i]), int(n[i]))
             for i in ids]
    return stats, confusion_matrix(gold, preds, labels=ids).tolist()


def entity_stats(gold: list[list[int]], preds: list[list[int]], labels: list[str]):
    """Per-entity-type P/R/F1 as seqeval computes them (exact spans, default mode), the
    word-level confusion matrix of entity types, and the micro F1 over all types."""
    from seqeval.metrics.sequence_labeling import get_entities
    from sklearn.metrics import confusion_matrix

    y, p = tags(gold, labels), tags(preds, labels)
    true, found = set(get_entities(y)), set(get_entities(p))  # (type, start, end)
    stats = []
    for kind in sorted({e[0] for e in true | found}):
        t = {e for e in true if e[0] == kind}
        f = {e for e in found if e[0] == kind}
        stats.append(ClassStats(kind, *prf(len(t & f), len(f), len(t)), support=len(t)))
    classes = class_names("token", labels)
    flat_y = [t[2:] if t != "O" else "O" for s in y for t in s]
    flat_p = [t[2:] if t != "O" else "O" for s in p for t in s]
    micro_f1 = prf(len(true & found), len(found), len(true))[2]
    return stats, confusion_matrix(flat_y, flat_p, labels=classes).tolist(), micro_f1


def same_entities(gold: list[int], pred: list[int], labels: list[str]) -> bool:
    """A sentence is right when it has exactly the gold entities (what entity F1 counts),
    even if a tag differs, e.g. I- for B- at an entity's start."""
    from seqeval.metrics.sequence_labeling import get_entities

    if gold == pred:
        return True
    return set(get_entities([labels[t] for t in gold])) == \
        set(get_entities([labels[t] for t in pred]))


def prf(correct: int, predicted: int, actual: int) -> tuple[float, float, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


BANDS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 5.0001))


def regression_bands(gold: list[float], preds: list[float]) -> list[Band]:
    """Errors per band of the gold score: STS-B's 0-5 scale by whole points, other ranges in
    five equal bands."""
    lo, hi = min(gold), max(gold)
    bands = BANDS if lo >= 0 and hi <= 5.0001 else tuple(
        (lo + (hi - lo) * i / 5, lo + (hi - lo) * (i + 1) / 5 + 1e-9) for i in range(5))
    out = []
    for a, b in bands:
        idx = [i for i, g in enumerate(gold) if a <= g < b]
        if not idx:
            continue
        err = [preds[i] - gold[i] for i in idx]
        out.append(Band(f"{a:.3g}–{min(b, hi):.3g}", len(idx),
                        mae=sum(abs(e) for e in err) / len(err), bias=sum(err) / len(err),
                        close=sum(abs(e) <= CLOSE for e in err) / len(err)))
    return out


def example(kind: str, labels: list[str], gold_split: dict, i: int, teacher, pred) -> dict:
    a, b, gold = gold_split["a"][i], gold_split["b"][i], gold_split["label"][i]
    if kind == "token":
        return {"text": " ".join(a), "gold": entities(a, gold, labels),
                "teacher": entities(a, teacher, labels), "method": entities(a, pred, labels)}
    text = a.strip() if b is None else f"{a.strip()} ‖ {b.strip()}"
    if kind == "regression":
        return {"text": text, "gold": f"{gold:.2f}", "teacher": f"{teacher:.2f}",
                "method": f"{pred:.2f}"}
    return {"text": text, "gold": labels[gold], "teacher": labels[teacher],
            "method": labels[pred]}


def entities(words: list[str], ids: list[int], labels: list[str]) -> str:
    from seqeval.metrics.sequence_labeling import get_entities

    found = get_entities([labels[t] for t in ids])
    return "; ".join(f"{' '.join(words[s:e + 1])} ({kind})" for kind, s, e in found) or "(none)"
