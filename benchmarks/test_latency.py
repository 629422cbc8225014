"""The batch-1 latency protocol on the embedded teacher (all-MiniLM-L6-v2, 1 thread).

Run: make bench   (or: pytest benchmarks/test_latency.py --benchmark-only -s)
pytest-benchmark times the pass over 100 real SST-2 dev sentences at their own lengths; the
printed line is compressbench's own measurement (separate process, same protocol as a suite).
"""
from __future__ import annotations

import random

import torch

from compressbench import data as D
from compressbench import models
from compressbench.measure import Summary, measure_model
from compressbench.suite import Measure

N = 100


def test_teacher_batch1_latency(benchmark, sst2, tmp_path):
    task, _, dev = sst2
    ref = str(models.embedded_teacher_path())
    tok = models.load_tokenizer(ref)
    feats = D.encode(task, tok, dev, 128)
    random.Random(0).shuffle(feats)
    feats = feats[:N]
    model = models.load_pretrained(ref, "classification", 2).eval()
    inputs = [models.forward_kwargs(model, D.collate([f])) for f in feats]
    torch.set_num_threads(1)
    samples = []

    def one_pass():
        with torch.inference_mode():
            for kw in inputs:
                model(**kw)

    for kw in inputs[:10]:  # warm-up
        with torch.inference_mode():
            model(**kw)
    benchmark.pedantic(one_pass, rounds=3, iterations=1)
    folder = models.save_model(model, tmp_path / "teacher", "classification")
    m = measure_model(folder, feats, Measure(latency_samples=N, warmup=10))
    summary = Summary(**m["latency_ms"])
    samples.append(summary)
    per_example = benchmark.stats.stats.median / N * 1000
    benchmark.extra_info.update({"protocol_p50_ms": summary.p50, "protocol_p90_ms": summary.p90,
                                 "in_process_mean_ms": per_example,
                                 "mean_tokens": m["mean_tokens"]})
    print(f"\nembedded teacher, batch 1, 1 thread, {N} SST-2 dev sentences "
          f"(mean {m['mean_tokens']:.1f} tokens): p50 {summary.p50:.2f} ms, "
          f"p90 {summary.p90:.2f} ms, p99 {summary.p99:.2f} ms, stdev {summary.stdev:.2f}; "
          f"in-process mean {per_example:.2f} ms; peak RSS {m['memory_mb']['peak_rss']:.0f} MB")
    assert summary.n == N
