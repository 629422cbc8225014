"""What is timed and how often (the child side of a measurement).

For one model on one backend, in a fresh process with the thread count set:

1. load the model's session (resident memory before and after: the model's own footprint);
2. ``warmup`` untimed calls, then ``repeats`` passes over the latency examples one by one
   (batch 1, each at its own length, no padding): wall and CPU time per call;
3. throughput at ``throughput_batch_size`` over ``throughput_samples`` examples; peak memory;
4. with a reference (the teacher) on the same backend, and the teacher in PyTorch eager fp32 (the
   common baseline), the sessions are timed alternately on the same examples, the order
   rotating every example: paired speed-ups that drift between jobs (other load, clock
   changes) does not distort. Speed-up = reference p50 / model p50, by wall and by CPU time.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from compressbench.batching import filled_like, mask_of, n_tokens, pad_rows
from compressbench.measure.trackers import Summary, Timer, peak_rss_mb, rss_mb


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    warmup: int = 10
    latency_samples: int = 200
    repeats: int = 1
    throughput_batch_size: int = 32
    throughput_samples: int = 256


def as_batch(features: list[dict], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Tokenized examples -> int64 arrays (B, T) (or (B, K, T): K token rows per example),
    padded to the longest, with the mask."""
    ids = [f["input_ids"] for f in features]
    width = max(n_tokens(f) for f in features)
    types = [f["token_type_ids"] if "token_type_ids" in f else filled_like(f["input_ids"], 0)
             for f in features]
    return {"input_ids": pad_rows(ids, pad_id, width), "attention_mask": mask_of(ids, width),
            "token_type_ids": pad_rows(types, 0, width)}


def solo(session, features: list[dict], s: Settings) -> dict:
    """Steps 2 and 3 for one loaded session."""
    batches = [session.inputs(as_batch([f])) for f in features[:s.latency_samples]]
    for i in range(s.warmup):
        session(batches[i % len(batches)])
    timer = Timer()
    for _ in range(s.repeats):
        for b in batches:
            timer.call(session, b)
    pool = features[:s.throughput_samples]
    big = [session.inputs(as_batch(pool[i:i + s.throughput_batch_size]))
           for i in range(0, len(pool), s.throughput_batch_size)]
    session(big[0])  # warm-up at this batch shape
    start = time.perf_counter()
    for b in big:
        session(b)
    elapsed = time.perf_counter() - start
    return {"latency_ms": asdict(Summary.of(timer.wall)),
            "cpu_ms": asdict(Summary.of(timer.cpu)),
            "latency_samples_ms": [round(x, 4) for x in timer.wall],
            "throughput": {"batch_size": s.throughput_batch_size, "examples": len(pool),
                           "examples_per_s": len(pool) / elapsed},
            "mean_tokens": statistics.fmean(n_tokens(f) for f in features[:s.latency_samples])}


def paired(sessions: list, features: list[dict], s: Settings) -> list[Timer]:
    """Step 4: every session on each example in turn, the first one rotating."""
    inputs = [[sess.inputs(as_batch([f])) for f in features[:s.latency_samples]]
              for sess in sessions]
    for i in range(s.warmup):
        for sess, xs in zip(sessions, inputs):
            sess(xs[i % len(xs)])
    timers = [Timer() for _ in sessions]
    k = len(sessions)
    for i in range(len(inputs[0])):
        for j in range(k):
            n = (i + j) % k
            timers[n].call(sessions[n], inputs[n][i])
    return timers


def ratio_interval(model: list[float], reference: list[float], resamples: int = 500,
                   level: float = 0.95) -> list[float]:
    """Bootstrap interval of median(reference) / median(model) over the timed examples, each
    example's two timings kept together (they were taken side by side)."""
    m, r = np.asarray(model), np.asarray(reference)
    idx = np.random.default_rng(0).integers(0, len(m), size=(resamples, len(m)))
    ratios = np.median(r[idx], axis=1) / np.median(m[idx], axis=1)
    lo, hi = np.percentile(ratios, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def speedup(model: Timer, reference: Timer, name: str) -> dict:
    m, r = Summary.of(model.wall), Summary.of(reference.wall)
    mc, rc = Summary.of(model.cpu), Summary.of(reference.cpu)
    return {"reference": name, "speedup": r.p50 / m.p50, "cpu_speedup": rc.p50 / mc.p50,
            "ci95": ratio_interval(model.wall, reference.wall),
            "model_ms": asdict(m), "reference_ms": asdict(r), "model_cpu_ms": asdict(mc),
            "reference_cpu_ms": asdict(rc)}


def agreement(a: list[np.ndarray], b: list[np.ndarray], masks: list[np.ndarray],
              kind) -> dict:
    """How far ``b``'s logits are from ``a``'s, as the task kind measures it (the largest
    absolute difference, and the fraction of predictions that agree; see
    :meth:`compressbench.kinds.TaskKind.agreement`)."""
    from compressbench import kinds
    return kinds.get(kind).agreement(a, b, masks)


def measure_memory(load):
    """Load a session, returning it with the resident memory it added (MB)."""
    before = rss_mb()
    session = load()
    return session, rss_mb() - before


def memory(baseline: float, after_imports: float, model_rss: float) -> dict:
    return {"baseline_rss": baseline, "after_imports_rss": after_imports,
            "model_rss": model_rss, "peak_rss": peak_rss_mb()}
