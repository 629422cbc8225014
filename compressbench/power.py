"""What a suite can tell apart, before it runs: the smallest difference between two methods
that its seeds and reported examples detect with 80% power at the 5% level.

The report's comparisons (:mod:`compressbench.report.uncertainty`) have a standard error from two
sources: the reported split's examples (the variance of a paired difference shrinks as 1/n) and
the seeds (``s^2 / S`` per side). Before a run, both come from the previous run of the same
suite where one exists (its report's comparisons), else from stated defaults:
:data:`DEFAULT_SEED_SD` and :data:`DEFAULT_DISAGREEMENT`. ``validate`` and ``run`` print a note
for every task where that smallest difference is more than ``--within`` points.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from compressbench.report.uncertainty import detectable, welch_df

#: seed-to-seed standard deviation of a fine-tuned student's score when no run says otherwise:
#: 1.5 points, about the middle of what reports/glue-sample saw for the 3-layer students on
#: SST-2 (0.4-2.4 points)
DEFAULT_SEED_SD = 0.015
#: share of the reported examples on which two compared models answer differently, when no run
#: says otherwise; the variance of a paired difference of accuracies is at most this / n
DEFAULT_DISAGREEMENT = 0.2


@dataclass(frozen=True)
class Spread:
    seed_sd: float  # standard deviation of a method's score over seeds
    example_var_n: float  # variance of a paired difference over examples, times n
    source: str  # where the two came from, in words


def default_spread() -> Spread:
    return Spread(DEFAULT_SEED_SD, DEFAULT_DISAGREEMENT,
                  f"defaults: seed spread {100 * DEFAULT_SEED_SD:g} points, models disagreeing "
                  f"on {DEFAULT_DISAGREEMENT:.0%} of the examples")


def spread_from_run(run_dir: Path) -> dict[str, Spread]:
    """Per task, the spread a finished run measured: the pooled seed standard deviation of its
    multi-seed rows and the median example-level variance of its comparisons (x n). Empty
    where the run has no records or kept no predictions."""
    from compressbench import results
    from compressbench.errors import CompressBenchError
    from compressbench.report import summarise

    if not (Path(run_dir) / results.RESULTS).is_file():
        return {}
    try:
        summary = summarise(run_dir)
    except CompressBenchError:
        return {}
    out = {}
    for table in summary.tables:
        variances = [statistics.variance(r.score) for r in table.rows
                     if len(r.score) > 1 and not r.flagged]
        # between methods where the run has such comparisons, else against the teacher
        comparisons = [r.vs_baseline for r in table.rows if r.vs_baseline is not None] or \
            [r.vs_teacher for r in table.rows if r.vs_teacher is not None]
        comparisons = [c for c in comparisons if c.example_var is not None]
        n = next(iter(r.data.get(f"eval_{table.split}") for r in summary.records
                      if r.task == table.task and r.data.get(f"eval_{table.split}")), None)
        if not variances or not comparisons or not n:
            continue
        out[table.task] = Spread(
            math.sqrt(statistics.fmean(variances)),
            statistics.median(c.example_var for c in comparisons) * n,
            f"the previous run in {run_dir}: seed spread "
            f"{100 * math.sqrt(statistics.fmean(variances)):.1f} points over "
            f"{len(variances)} methods")
    return out


def smallest_detectable(seeds_a: int, seeds_b: int, n: int, spread: Spread) -> float:
    """The smallest difference of two rows with these seeds on ``n`` reported examples that
    the report's comparison detects with 80% power (a fraction: 0.01 is a point)."""
    parts = [(spread.seed_sd ** 2 / s, s - 1.0) if s > 1 else (0.0, math.inf)
             for s in (seeds_a, seeds_b)]
    var = spread.example_var_n / n + sum(v for v, _ in parts)
    return detectable(var, welch_df(parts))


def reported_sizes(prepared: dict) -> dict[str, int]:
    """Task name -> examples in its (first) reported split, from prepared ``TaskData``."""
    return {name: len(next(iter(d.evals.values()))) for name, d in prepared.items() if d.evals}


def notes(suite, sizes: dict[str, int], run_dir: Path | None, within: float) -> list[str]:
    """A note per task where two methods with the suite's usual number of seeds cannot be
    told apart at a difference of ``within`` points; ``sizes``: task -> reported examples."""
    several = [len(m.seeds_in(suite)) for m in suite.methods if len(m.seeds_in(suite)) > 1]
    s = max(sorted(set(several)), key=several.count) if several else 1  # methods' usual seeds
    measured = spread_from_run(run_dir) if run_dir is not None else {}
    out = []
    for task, n in sizes.items():
        spread = measured.get(task) or default_spread()
        mdd = smallest_detectable(s, s, n, spread)
        if mdd * 100 <= within:
            continue
        level = (f"{s} seeds a method" if s > 1 else
                 "one seed a method (a comparison of trained models, not of methods)")
        text = (f"{task}: with {level} and {n:,} reported examples, two methods are told "
                f"apart only when they differ by about {100 * mdd:.1f} points or more (80% "
                f"power, 5% level; {spread.source}), more than --within {within:g}: a "
                f"smaller difference will read 'not distinguishable'")
        if s > 1:
            text += (f". With 10 seeds: {100 * smallest_detectable(10, 10, n, spread):.1f} "
                     f"points; the examples alone, whatever the seeds: "
                     f"{100 * detectable(spread.example_var_n / n, math.inf):.1f}")
        out.append(text)
    return out
