"""Error-analysis statistics shared by the built-in task kinds (per class, per entity type, per
band of a regression score); :mod:`compressbench.report.analysis` lays them out."""
from __future__ import annotations

from dataclasses import dataclass

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


def tags(ids: list[list[int]], labels: list[str]) -> list[list[str]]:
    return [[labels[t] for t in sent] for sent in ids]


def entity_classes(labels: list[str]) -> list[str]:
    """Entity types of BIO tags (B-/I- merged), then O."""
    types = sorted({t[2:] for t in labels if t[:2] in ("B-", "I-")})
    return types + ["O"]


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
    classes = entity_classes(labels)
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
