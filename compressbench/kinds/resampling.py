"""Bootstrap statistics on resampled examples, shared by the built-in task kinds: each function
takes the resamples as rows of an index array ``idx`` (b, n) and returns a (b,) array."""
from __future__ import annotations

import numpy as np


def safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def class_counts(gold: np.ndarray, pred: np.ndarray, idx: np.ndarray, cls: int):
    g, p = gold == cls, pred == cls
    tp = (g & p)[idx].sum(1).astype(float)
    fp = (~g & p)[idx].sum(1).astype(float)
    fn = (g & ~p)[idx].sum(1).astype(float)
    return tp, fp, fn


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of (b, n) arrays (0 where a row is constant, as metrics.py)."""
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    return safe_div((x * y).sum(1), den)


def rank_rows(a: np.ndarray) -> np.ndarray:
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
