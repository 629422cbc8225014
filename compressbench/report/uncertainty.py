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
- Several seeds: a method's mean over seeds is uncertain twice over, by which examples the split
  happened to hold and by which seeds were drawn. Its interval comes from a two-level bootstrap
  (:func:`method_draws`): on each of the ``B`` example resamples, the seeds' mean score plus a
  draw of the seed level, ``s / sqrt(S) * t(S - 1)`` (``s`` the standard deviation of the S
  seeds' scores: the parametric bootstrap of a mean. With 3 seeds a resampling of the seeds has
  10 distinct outcomes: in ``tests/test_verdicts.py``'s simulation at 3,000 examples and a seed
  spread of 3 points, its interval covers the method's expected score 82% of the time, the
  t-based one 94%). Bouthillier et al. 2021 and Card et al. 2020 for why the
  seed spread belongs in the interval.
- A comparison of two rows (:func:`compare`) resamples the *difference*: the paired example
  resamples of ``a - b`` plus one seed-level draw for both sides together, Welch's standard
  error ``sqrt(s_a^2 / S_a + s_b^2 / S_b)`` times t with Welch-Satterthwaite's degrees of
  freedom. It is *distinguishable* when its 95% interval excludes 0; its two-sided p is
  ``2 * min(P(d <= 0), P(d >= 0))``. With one seed on either side the comparison is about
  those trained models, not the methods: ``level`` says ``model``.
- *Within a margin* (:meth:`Comparison.within`): the whole 95% interval of the difference lies
  above ``-margin``; not significant is not the same as within.
- *Detectable* (:attr:`Comparison.detectable`): the smallest difference the comparison had an
  80% chance of calling distinguishable at the 5% level, ``(t_0.975 + t_0.80) * se``, from the
  same standard error (examples and seeds) and degrees of freedom (Cohen 1988's normal
  approximation with t quantiles).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from compressbench import kinds

B = 1000  # resamples
LEVEL = 0.95


def resamples(n: int, key: str, b: int = B) -> np.ndarray:
    """(b, n) example indices drawn with replacement, the same for every model of ``key``."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, n, size=(b, n))


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bounded(ci: tuple[float, float], metric: str) -> tuple[float, float]:
    """``ci`` within the values ``metric`` can take (-1..1 for correlations and MCC, else 0..1):
    a t-based seed level with 2 seeds can reach past them."""
    lo, hi = (-1.0, 1.0) if metric in ("pearson", "spearman", "mcc") else (0.0, 1.0)
    return max(lo, min(hi, ci[0])), max(lo, min(hi, ci[1]))


def split_and_metric(main_metric: str, splits: list[str]) -> tuple[str, str]:
    """The reported split and the metric a record's ``main_metric`` names (``accuracy``, or
    ``accuracy_dev_matched`` for a task with several reported splits)."""
    for split in splits:
        if main_metric.endswith(f"_{split}"):
            return split, main_metric[:-len(split) - 1]
    return splits[0], main_metric


# --------------------------------------------------------------------------- metrics

def metric_on(kind, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
    """``metric`` on every resample (rows of ``idx``): a (b,) array, as the task kind computes
    it (``kind``: a :class:`~compressbench.kinds.TaskKind` or its name)."""
    return kinds.get(kind).resample_metric(metric, gold, pred, idx)


# --------------------------------------------------------------------------- comparisons

METHOD, MODEL = "method", "model"


@dataclass(frozen=True)
class Comparison:
    """``model - other`` on the main metric: the difference of the means over seeds, the 95%
    interval of its two-level bootstrap (examples and seeds), p, and the smallest difference the
    comparison could detect."""

    other: str  # the label compared with
    diff: float
    ci: tuple[float, float]
    p: float
    level: str = MODEL  # METHOD: 2+ seeds on both sides; MODEL: a claim about trained models
    detectable: float | None = None  # smallest difference detectable (80% power, 5% level)
    example_var: float | None = None  # the example level's share of the difference's variance

    @property
    def distinguishable(self) -> bool:
        return self.ci[0] > 0 or self.ci[1] < 0

    @property
    def sign(self) -> int:
        return 0 if not self.distinguishable else (1 if self.diff > 0 else -1)

    def within(self, margin: float) -> bool:
        """The whole interval of the difference lies above ``-margin`` (a fraction: 0.01 is a
        point of an accuracy): the data rule out a larger loss."""
        return self.ci[0] >= -margin


def seed_level(scores: list[float]) -> tuple[float, float]:
    """(variance of the mean over these seeds, its degrees of freedom): ``s^2 / S`` with S - 1;
    (0, inf) for one seed."""
    if len(scores) < 2:
        return 0.0, math.inf
    return float(np.var(scores, ddof=1)) / len(scores), float(len(scores) - 1)


def welch_df(parts: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of (variance, df) parts."""
    total = sum(v for v, _ in parts)
    den = sum(v * v / df for v, df in parts if v > 0 and math.isfinite(df))
    return total * total / den if den > 0 else math.inf


def t_draws(scale: float, df: float, key: str, b: int = B) -> np.ndarray:
    """``scale * T`` for ``b`` draws of Student's t with ``df`` degrees of freedom (normal for
    infinite df), from an RNG seeded by ``key``; zeros for a zero scale."""
    if scale <= 0:
        return np.zeros(b)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8],
                                               "little"))
    draws = rng.standard_normal(b) if math.isinf(df) else rng.standard_t(df, b)
    return scale * draws


def method_draws(per_seed: np.ndarray, scores: list[float], key: str) -> np.ndarray:
    """The two-level bootstrap of a method's mean over seeds: ``per_seed`` (S, b) holds each
    seed's metric on the b example resamples (the same for every model of the task);
    ``scores`` the seeds' scores on the whole split. Returns (b,) draws."""
    var, df = seed_level(scores)
    return per_seed.mean(0) + t_draws(math.sqrt(var), df, f"{key}/seeds", per_seed.shape[1])


def compare(label: str, a: np.ndarray, b: np.ndarray, seeds_a: list[float],
            seeds_b: list[float], key: str = "", scores_a: list[float] | None = None,
            scores_b: list[float] | None = None) -> Comparison:
    """``a``, ``b``: the two rows' example-level resampled scores (means over their seeds, on
    the same resamples); ``seeds_a``, ``seeds_b``: their seeds' scores on the whole split. The
    difference's draws are the paired example resamples plus one seed-level draw (Welch's
    standard error, t with Welch-Satterthwaite's df). The difference reported is that of the
    means of ``scores_a`` and ``scores_b`` (the records' scores; default the seeds')."""
    parts = [seed_level(seeds_a), seed_level(seeds_b)]
    seed_var = sum(v for v, _ in parts)
    df = welch_df(parts)
    d = (a - b) + t_draws(math.sqrt(seed_var), df, f"{key}/{label}/diff", len(a))
    p = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    level = METHOD if len(seeds_a) > 1 and len(seeds_b) > 1 else MODEL
    example_var = float(np.var(a - b))
    diff = float(np.mean(scores_a or seeds_a) - np.mean(scores_b or seeds_b))
    return Comparison(label, diff, interval(d), p, level,
                      detectable(example_var + seed_var, df), example_var)


def detectable(var: float, df: float, level: float = LEVEL, power: float = 0.8) -> float:
    """The smallest true difference a test at ``1 - level`` with this standard error finds with
    probability ``power``: ``(t_{1 - alpha/2} + t_power) * se``."""
    from scipy.stats import norm, t

    if var <= 0:
        return 0.0
    dist = t(df) if math.isfinite(df) else norm()
    return float(dist.ppf(0.5 + level / 2) + dist.ppf(power)) * math.sqrt(var)


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


def is_constant(kind, pred) -> bool:
    return kinds.get(kind).is_constant(pred)


def majority_baseline(kind, metric: str, gold) -> tuple[float, str]:
    """The main metric of the best constant prediction on the split (an upper bound for
    chance), with a description (see :meth:`~compressbench.kinds.TaskKind.majority_baseline`)."""
    return kinds.get(kind).majority_baseline(metric, gold)
