"""Batch-1 latency of the embedded teacher under each quantization scheme, on this CPU.

Run: make bench   (or: pytest benchmarks/test_quant_latency.py --benchmark-only -s)
Each scheme is built by its plugin (the same code a suite runs), saved, and measured with
compressbench's protocol (a fresh process, 1 thread, 100 real SST-2 dev sentences at their own
lengths); pytest-benchmark times one in-process pass over the same sentences. The question it
answers: is torchao's int8 faster or slower than PyTorch's dynamic int8 for BERT on this CPU?
Weights are the untuned pretrained encoder: latency does not depend on what they are.
"""
from __future__ import annotations

import random

import pytest
import torch

from compressbench import data as D
from compressbench import models
from compressbench.measure import Summary, measure_model
from compressbench.plugins import get_plugin_manager
from compressbench.suite import Measure

N = 100
SCHEMES = [
    ("fp32", None, {}),
    ("int8-dynamic", "quant-dynamic", {}),
    ("int8-dynamic-per-channel", "quant-dynamic", {"per_channel": True}),
    ("torchao-int8-dynamic", "quant-torchao", {"scheme": "int8-dynamic"}),
    ("torchao-int8-weight-only", "quant-torchao", {"scheme": "int8-weight-only"}),
    ("fp16", "quant-half", {"dtype": "float16"}),
    ("bf16", "quant-half", {"dtype": "bfloat16"}),
]


class Ctx:
    def __init__(self, model):
        self._model = model

    def model(self):
        return self._model


@pytest.mark.parametrize("label,method,params", SCHEMES, ids=[s[0] for s in SCHEMES])
def test_quantized_teacher_batch1_latency(benchmark, sst2, tmp_path, label, method, params):
    if method == "quant-torchao":
        pytest.importorskip("torchao", reason="pip install 'compressbench[torchao]'")
    task, _, dev = sst2
    ref = str(models.embedded_teacher_path())
    feats = D.encode(task, models.load_tokenizer(ref), dev, 128)
    random.Random(0).shuffle(feats)
    feats = feats[:N]
    model = models.load_pretrained(ref, "classification", 2).eval()
    if method is not None:
        plugin = get_plugin_manager().methods.get(method)
        model = plugin.build(Ctx(model), plugin.Params(**params))
    inputs = [models.forward_kwargs(model, D.collate([f])) for f in feats]
    before = torch.get_num_threads()
    torch.set_num_threads(1)

    def one_pass():
        with torch.inference_mode():
            for kw in inputs:
                model(**kw)

    one_pass()  # warm-up
    try:
        benchmark.pedantic(one_pass, rounds=2, iterations=1)
    finally:
        torch.set_num_threads(before)
    folder = models.save_model(model, tmp_path / label, "classification")
    m = measure_model(folder, feats, Measure(latency_samples=N, warmup=10))["backends"]["torch"]
    summary = Summary(**m["latency_ms"])
    benchmark.extra_info.update({"protocol_p50_ms": summary.p50,
                                 "protocol_p90_ms": summary.p90,
                                 "size_mb": models.weights_size(folder) / 1e6})
    print(f"\n{label}: p50 {summary.p50:.2f} ms, p90 {summary.p90:.2f} ms (protocol, "
          f"1 thread, {N} SST-2 sentences, mean {m['mean_tokens']:.1f} tokens); weights "
          f"{models.weights_size(folder) / 1e6:.1f} MB")
    assert summary.n == N
