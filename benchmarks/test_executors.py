"""Executors side by side: one suite from an empty cache, run ``inline`` (one job at a time,
torch's default threads), ``local`` (2 worker processes, a job's threads the cores shared among
the jobs running, re-read every step), ``local`` with 1 thread per job and ``ray`` (a Ray
started on this machine, jobs of 1 CPU: 2 at once on 2 cores), in turn, ``REPS`` times, in one
session on the same machine (``BENCH_EXECUTORS=inline,ray`` picks some).

Run: pytest benchmarks/test_executors.py --benchmark-only -s   (about 25 minutes on 2 cores)

The suite is ``suites/glue.yaml``'s shape at a budget a benchmark can afford: the embedded
teacher on SST-2 and MRPC, 800 training examples, the 3-layer students, a pruning and two
quantizations, measured on torch. Printed: each run's wall time, the ratio inline / local per
repetition and its range, and how many jobs got the same score in every run (they need not to
the last digit: a different thread count sums in another order).

Target (issue 13): the parallel executors at least 1.3x faster than inline.
"""
from __future__ import annotations

import os
import shutil
import statistics
import time

import pytest

from benchmarks.conftest import DATA
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite

REPS = int(os.environ.get("BENCH_REPS", "2"))
SUITE = """
version: 1
name: bench-executors
teacher: {model: embedded, training: {epochs: 2}}
tasks: [sst2, mrpc]
methods:
  - {name: finetune, label: finetune-3L, student: {layers: 3, init: teacher-skip}}
  - {name: kd, label: kd-3L, student: {layers: 3, init: teacher-skip}}
  - {name: pkd-skip, label: pkd-skip-3L, beta: 10}
  - {name: prune-heads, label: heads-40-kd, fraction: 0.4, recovery: kd,
     training: {epochs: 0.5}}
  - {name: quant-dynamic, label: int8-dynamic}
  - {name: pkd3-int8, chain: [{name: pkd-skip, beta: 10}, {name: quant-dynamic}]}
seeds: [42]
training: {epochs: 1, batch_size: 32, learning_rate: 1.0e-4, max_seq_length: 128,
           max_train_samples: 800, max_val_samples: 100, max_eval_samples: 300}
measure: {latency_samples: 30, warmup: 5, throughput_samples: 32}
"""


CONFIGS = {"inline": dict(executor="inline"),
           "local": dict(executor="local", workers=2),
           "local-1thread": dict(executor="local", workers=2, threads=1),
           "ray": dict(executor="ray", threads=1)}  # a Ray started here: 2 jobs of 1 CPU
if os.environ.get("BENCH_EXECUTORS"):  # e.g. BENCH_EXECUTORS=inline,local,ray
    CONFIGS = {k: CONFIGS[k] for k in os.environ["BENCH_EXECUTORS"].split(",")}


@pytest.mark.benchmark(group="executors")
def test_local_workers_against_inline(benchmark, tmp_path):
    if not (DATA / "glue" / "MRPC").is_dir():
        pytest.skip(f"needs GLUE in {DATA} (COMPRESSBENCH_DATA_DIR)")
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(SUITE)
    suite = load_suite(suite_path)
    walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
    scores: dict[str, dict] = {}

    def once(rep: int, name: str) -> None:
        run_dir, cache = tmp_path / f"run-{name}-{rep}", tmp_path / f"cache-{name}-{rep}"
        start = time.perf_counter()
        records = run_suite(suite, get_plugin_manager(), DATA, run_dir, cache, **CONFIGS[name])
        walls[name].append(time.perf_counter() - start)
        assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
        scores[name] = {r["job_id"]: r["score"] for r in records}
        shutil.rmtree(cache)

    def all_reps() -> None:
        names = list(CONFIGS)
        for rep in range(REPS):
            for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotate
                once(rep, name)

    benchmark.pedantic(all_reps, rounds=1, iterations=1)
    for name in CONFIGS:
        print(f"\n{name} wall s: {', '.join(f'{w:.0f}' for w in walls[name])}", end="")
        if name != "inline":
            ratios = [a / b for a, b in zip(walls["inline"], walls[name])]
            print(f"; inline / {name}: median {statistics.median(ratios):.2f}x "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} reps)", end="")
    jobs = scores["inline"]
    same = sum(len({scores[n][k] for n in CONFIGS}) == 1 for k in jobs)
    print(f"\njobs with the same score in every configuration: {same} of {len(jobs)}")
    assert all(len(w) == REPS for w in walls.values())
