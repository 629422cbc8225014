"""How sure a number is: bootstrap intervals over the reported split's examples, paired
comparisons, intervals across seeds, and flags for models whose score means nothing.

Every model of a task is scored on the same bootstrap resamples of the reported split (drawn
once per task, seeded by its name), so two models' resampled scores are paired: the interval of
their difference is much narrower than either interval alone when the models err on the same
examples (Efron & Tibshirani 1993, ch. 13; Koehn 2004 for the paired bootstrap in NLP).

- Classification metrics resample examples; correlations resample (gold, prediction) pairs;
  CoNLL's entity F1 resamples sentences (entities never straddle sentences), from per-sentence
  counts of true positives, false positives and false negatives, which give seqeval's micro
  F1 exactly.
- Intervals are percentile intervals (2.5th and 97.5th percentiles of ``B`` resamples).
- A difference is *distinguishable* when its 95% interval excludes 0; its two-sided p is
  ``2 * min(P(d <= 0), P(d >= 0))`` over the resamples. With several seeds per model, the
  resampled score is the mean over seeds on each resample, and the seed-to-seed spread is
  tested too (Welch's t-test on the seeds' scores); both must agree for "distinguishable".
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

B = 1000  # resamples
LEVEL = 0.95


def resamples(n: int, key: str, b: int = B) -> np.ndarray:
    """(b, n) example indices drawn with replacement, the same for every model of ``key``."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, n, size=(b, n))


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def split_and_metric(main_metric: str, splits: list[str]) -> tuple[str, str]:
    """The reported split and the metric a record's ``main_metric`` names (``accuracy``, or
    ``accuracy_dev_matched`` for a task with several reported splits)."""
    for split in splits:
        if main_metric.endswith(f"_{split}"):
            return split, main_metric[:-len(split) - 1]
    return splits[0], main_metric


# --------------------------------------------------------------------------- metrics

def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _counts(gold: np.ndarray, pred: np.ndarray, idx: np.ndarray, cls: int):
    g, p = gold == cls, pred == cls
    tp = (g & p)[idx].sum(1).astype(float)
    fp = (~g & p)[idx].sum(1).astype(float)
    fn = (g & ~p)[idx].sum(1).astype(float)
    return tp, fp, fn


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of (b, n) arrays (0 where a row is constant, as metrics.py)."""
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    return _safe_div((x * y).sum(1), den)


def _rank_rows(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=1)  # average ranks for ties, as scipy's spearmanr


def entity_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    """Per sentence: (true positives, false positives, false negatives) of entities, as
    seqeval counts them (strict spans with type)."""
    from seqeval.metrics.sequence_labeling import get_entities

    out = np.zeros((len(gold), 3))
    for i, (g, p) in enumerate(zip(gold, pred)):
        ge, pe = set(get_entities(g)), set(get_entities(p))
        out[i] = (len(ge & pe), len(pe - ge), len(ge - pe))
    return out


def metric_on(kind: str, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
    """``metric`` on every resample (rows of ``idx``): a (b,) array. ``gold``/``pred``: class
    ids, floats, or (token tasks) per-sentence tag names."""
    if kind == "token":
        if metric in ("f1", "precision", "recall"):
            counts = entity_counts(gold, pred)[idx].sum(1)  # (b, 3)
            tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
            if metric == "precision":
                return _safe_div(tp, tp + fp)
            if metric == "recall":
                return _safe_div(tp, tp + fn)
            return _safe_div(2 * tp, 2 * tp + fp + fn)
        if metric == "accuracy":
            per = np.array([[sum(a == b for a, b in zip(g, p)), len(g)]
                            for g, p in zip(gold, pred)], dtype=float)[idx].sum(1)
            return _safe_div(per[:, 0], per[:, 1])
        raise ValueError(f"no bootstrap for token metric {metric!r}")
    g, p = np.asarray(gold), np.asarray(pred)
    if kind == "regression":
        gi, pi = g.astype(float)[idx], p.astype(float)[idx]
        if metric == "pearson":
            return _pearson(gi, pi)
        if metric == "spearman":
            return _pearson(_rank_rows(gi), _rank_rows(pi))
        raise ValueError(f"no bootstrap for regression metric {metric!r}")
    if metric == "accuracy":
        return (g == p)[idx].mean(1)
    if metric == "f1":
        tp, fp, fn = _counts(g, p, idx, 1)
        return _safe_div(2 * tp, 2 * tp + fp + fn)
    if metric == "mcc":
        tp, fp, fn = _counts(g, p, idx, 1)
        tn = idx.shape[1] - tp - fp - fn
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return _safe_div(tp * tn - fp * fn, den)
    if metric == "macro_f1":
        classes = np.union1d(np.unique(g), np.unique(p))
        per = [_safe_div(2 * tp, 2 * tp + fp + fn) for tp, fp, fn in
               (_counts(g, p, idx, int(c)) for c in classes)]
        return np.mean(per, axis=0)
    raise ValueError(f"no bootstrap for classification metric {metric!r}")


# --------------------------------------------------------------------------- comparisons

@dataclass(frozen=True)
class Comparison:
    """``model - other`` on the main metric: the difference of means, its paired bootstrap
    interval and p, and (with several seeds each) Welch's p over the seeds' scores."""

    other: str  # the label compared with
    diff: float
    ci: tuple[float, float]
    p: float
    seed_p: float | None = None  # Welch's t-test across seeds, where both have 2+

    @property
    def distinguishable(self) -> bool:
        excludes = self.ci[0] > 0 or self.ci[1] < 0
        return excludes and (self.seed_p is None or self.seed_p < 1 - LEVEL)

    @property
    def sign(self) -> int:
        return 0 if not self.distinguishable else (1 if self.diff > 0 else -1)


def compare(label: str, a: np.ndarray, b: np.ndarray, seeds_a: list[float],
            seeds_b: list[float]) -> Comparison:
    """``a``, ``b``: the two models' resampled scores (mean over seeds, same resamples)."""
    d = a - b
    p = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    seed_p = None
    if len(seeds_a) > 1 and len(seeds_b) > 1:
        seed_p = welch_p(seeds_a, seeds_b)
    return Comparison(label, float(np.mean(seeds_a) - np.mean(seeds_b)), interval(d), p,
                      seed_p)


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of Welch's t-test (1.0 when both samples are constant and equal)."""
    from scipy.stats import ttest_ind

    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def seed_interval(values: list[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Student-t interval of the mean over seeds; None for one seed."""
    if len(values) < 2:
        return None
    from scipy.stats import t

    m, s = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(t.ppf(0.5 + level / 2, len(values) - 1)) * s / math.sqrt(len(values))
    return m - half, m + half


# --------------------------------------------------------------------------- flags

CONSTANT = "constant"
NAN = "nan-metric"
CHANCE = "teacher-at-chance"
FLAG_TEXT = {
    CONSTANT: "predicts one class (or one value) for the whole split",
    NAN: "a metric is not a number",
    CHANCE: "the teacher is not distinguishable from the majority-class baseline",
}


def is_constant(kind: str, pred) -> bool:
    if kind == "token":
        return len({t for s in pred for t in s}) <= 1
    values = np.asarray(pred, dtype=float)
    return values.size == 0 or float(np.ptp(values)) < 1e-9


def majority_baseline(kind: str, metric: str, gold) -> tuple[float, str]:
    """The main metric of predicting the split's most frequent class (the best constant
    classifier on it; an upper bound for chance), or 0 for correlations; with a description."""
    if kind == "regression":
        return 0.0, "a constant prediction has correlation 0"
    if kind == "token":
        outside = [["O"] * len(s) for s in gold]
        idx = np.arange(len(gold))[None, :]
        return float(metric_on(kind, metric, gold, outside, idx)[0]), "every token tagged O"
    g = np.asarray(gold)
    values, counts = np.unique(g, return_counts=True)
    top = values[np.argmax(counts)]
    idx = np.arange(len(g))[None, :]
    score = float(metric_on(kind, metric, g, np.full_like(g, top), idx)[0])
    return score, f"always class {top} ({counts.max() / len(g):.1%} of the split)"
