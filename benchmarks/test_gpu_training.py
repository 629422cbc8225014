"""The shared training loop on a CUDA GPU: steps per second for a BERT-base-shaped model
(12 layers, hidden 768, random weights: nothing is downloaded) at batch 32 and length 128, in
fp32, bf16 and fp16, side by side in one process. Skipped without a GPU.

Run: pytest benchmarks/test_gpu_training.py --benchmark-only -s
"""
from __future__ import annotations

import random
import time

import pytest
import torch

from compressbench.suite import Training
from compressbench.tasks import Example
from compressbench.training import set_seed, supervised_loss, train

STEPS, BATCH, LENGTH, REPS = 60, 32, 128, 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.benchmark(group="gpu-training")
def test_precisions_on_cuda(benchmark, sst2):
    import transformers

    task = sst2[0]
    rng = random.Random(0)
    feats = [{"input_ids": [101] + [rng.randrange(1000, 30000) for _ in range(LENGTH - 2)]
              + [102], "token_type_ids": [0] * LENGTH, "labels": rng.randrange(2)}
             for _ in range(STEPS * BATCH)]
    val, val_ex = feats[:64], [Example("x", None, f["labels"]) for f in feats[:64]]
    config = transformers.BertConfig(num_labels=2)  # BERT-base's shape
    speeds: dict[str, list[float]] = {p: [] for p in ("fp32", "bf16", "fp16")}

    def once(precision: str) -> None:
        set_seed(0)
        model = transformers.BertForSequenceClassification(config)
        cfg = Training(epochs=1.0, batch_size=BATCH, learning_rate=5e-5, device="cuda",
                       precision=precision)
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = train(model, supervised_loss("classification"), task, feats, val, val_ex,
                       cfg, seed=0)
        torch.cuda.synchronize()
        assert result.steps == STEPS
        speeds[precision].append(STEPS / (time.perf_counter() - start))

    def all_reps() -> None:
        names = list(speeds)
        for rep in range(REPS):
            for name in names[rep % 3:] + names[:rep % 3]:  # rotate the order
                once(name)

    for name in speeds:  # warm-up: CUDA context, each precision's kernels, the allocator
        once(name)
        speeds[name].clear()
    benchmark.pedantic(all_reps, rounds=1, iterations=1)
    print(f"\n{torch.cuda.get_device_name()}: BERT-base, batch {BATCH}, length {LENGTH}, "
          f"{STEPS} steps incl. 1 validation of 64 examples")
    for name, values in speeds.items():
        ratio = [v / f for v, f in zip(values, speeds["fp32"])]
        print(f"{name}: {', '.join(f'{v:.2f}' for v in values)} steps/s; vs fp32 "
              f"{min(ratio):.2f}-{max(ratio):.2f}x")
