"""Every backend, side by side: the embedded teacher and a distilled 3-layer student, fp32 and
int8, on PyTorch eager, ONNX Runtime and OpenVINO (and torch.compile for the fp32 models).

Run: make bench   (or: pytest benchmarks/test_backends.py --benchmark-only -s)

The models are built by a suite (SST-2, the same training settings as ``suites/glue.yaml``, so
with the same cache a glue run's teacher and PKD student are reused, and otherwise they are
trained here: about 4 minutes on 2 cores). Each model is then measured ``REPS`` times with
compressbench's protocol (a fresh process per model and backend, 1 thread, 200 SST-2 dev
sentences at their own lengths), each time paired with the teacher in PyTorch eager fp32 on the
same sentences. Printed: the median speed-up against that baseline and its range over the
repetitions, by wall time and by CPU time, with SST-2 dev accuracy (scored by the runtime itself
for quant-ort / quant-openvino models).

Targets (issue 12): ONNX Runtime int8 of the teacher >= 3.5x at <= 1 point of SST-2 dev accuracy
below the fine-tuned fp32 teacher; the distilled 3-layer student -> quant-ort >= 6.5x.
"""
from __future__ import annotations

import importlib.util
import os
import random
import statistics
from pathlib import Path

import pytest

from compressbench import data as D
from compressbench import models
from compressbench.measure import measure_model
from compressbench.plugins import get_plugin_manager
from compressbench.runner import default_cache_dir, run_suite
from compressbench.suite import Measure, load_suite

pytest.importorskip("onnxruntime", reason="pip install 'compressbench[onnx]'")
HAS_OV = all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
N = 200
SUITE = """
version: 1
name: bench-backends
teacher: {model: embedded, training: {epochs: 4}}
tasks: [sst2]
methods:
  - {name: pkd-skip, label: pkd-skip-3L, beta: 10}
  - {name: quant-dynamic, label: int8-dynamic}
  - {name: quant-ort, label: ort-int8}
  - {name: pkd3-int8, chain: [{name: pkd-skip, beta: 10}, {name: quant-dynamic}]}
  - {name: pkd3-ort-int8, chain: [{name: pkd-skip, beta: 10}, {name: quant-ort}]}
""" + ("""  - {name: quant-openvino, label: ov-int8}
  - {name: pkd3-ov-int8, chain: [{name: pkd-skip, beta: 10}, {name: quant-openvino}]}
""" if HAS_OV else "") + """
seeds: [42]
training: {epochs: 2, batch_size: 32, learning_rate: 1.0e-4, max_seq_length: 128,
           max_train_samples: 3000, max_val_samples: 300, max_eval_samples: null}
measure: {enabled: false}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, sst2):
    """The suite's models (from the cache when a glue run made them) and 200 dev sentences."""
    from benchmarks.conftest import DATA

    tmp = tmp_path_factory.mktemp("bench-backends")
    (tmp / "suite.yaml").write_text(SUITE)
    records = run_suite(load_suite(tmp / "suite.yaml"), get_plugin_manager(), DATA,
                        tmp / "run", default_cache_dir())
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    task, _, dev = sst2
    feats = D.encode(task, models.load_tokenizer(str(models.embedded_teacher_path())), dev, 128)
    random.Random(0).shuffle(feats)
    return {r["label"]: r for r in records}, feats[:N], tmp


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"
            if values else "–")


def test_every_backend_against_pytorch_eager(built, benchmark):
    records, feats, tmp = built
    teacher = Path(records["teacher"]["cache_dir"])
    backends = ["torch", "onnxruntime"] + (["openvino"] if HAS_OV else [])
    rows = {}
    pm = get_plugin_manager()

    def measure_all():
        for label, r in records.items():
            cfg = Measure(latency_samples=N, warmup=10, throughput_samples=64,
                          backends=tuple(backends))
            m = measure_model(Path(r["cache_dir"]), feats, cfg, pm,
                              reference=None if label == "teacher" else teacher,
                              baseline=teacher, cache_dir=tmp / "runtimes")
            for name, run in m["backends"].items():
                row = rows.setdefault((label, name), {"wall": [], "cpu": [], "status": ""})
                row["status"] = run["status"] if run["status"] == "ok" else \
                    f"{run['status']}: {run.get('reason') or run.get('error')}"
                if run["status"] != "ok":
                    continue
                if label == "teacher" and name == "torch":
                    row["wall"].append(1.0)
                    row["cpu"].append(1.0)
                else:
                    row["wall"].append(run["vs_eager"]["speedup"])
                    row["cpu"].append(run["vs_eager"]["cpu_speedup"])

    benchmark.pedantic(measure_all, rounds=REPS, iterations=1)
    base = records["teacher"]["score"]
    print(f"\nspeed-up against the teacher in PyTorch eager fp32, median (range) over {REPS} "
          f"repetitions, {N} SST-2 dev sentences, batch 1, 1 thread; accuracy on SST-2 dev "
          f"(teacher {base:.4f})")
    for (label, name), row in sorted(rows.items(), key=lambda kv: (kv[0][0] != "teacher",
                                                                    kv[0])):
        acc = records[label]["score"]
        print(f"  {label:15s} {name:12s} wall {spread(row['wall']):22s} CPU "
              f"{spread(row['cpu']):22s} acc {acc:.4f} ({100 * (acc - base):+.1f})"
              + ("" if row["status"] == "ok" else f"  [{row['status']}]"))
        benchmark.extra_info[f"{label}@{name}"] = {"wall": row["wall"], "cpu": row["cpu"],
                                                   "accuracy": acc, "status": row["status"]}
    ort_teacher = statistics.median(rows[("ort-int8", "onnxruntime")]["wall"])
    ort_student = statistics.median(rows[("pkd3-ort-int8", "onnxruntime")]["wall"])
    loss = 100 * (base - records["ort-int8"]["score"])
    print(f"targets: ORT int8 teacher {ort_teacher:.2f}× (>= 3.5) at {loss:.2f} points below "
          f"fp32 (<= 1); 3L -> quant-ort {ort_student:.2f}× (>= 6.5)")
    assert ort_teacher >= 3.5 and loss <= 1.0
    assert ort_student >= 6.5


def test_torch_compile(built, benchmark):
    """torch.compile of the fp32 teacher and student (tens of seconds of compiling each)."""
    records, feats, tmp = built
    teacher = Path(records["teacher"]["cache_dir"])
    out = {}

    def once():
        for label in ("teacher", "pkd-skip-3L"):
            m = measure_model(Path(records[label]["cache_dir"]), feats,
                              Measure(latency_samples=N, warmup=10, throughput_samples=32,
                                      backends=("torch-compile",)),
                              baseline=teacher, cache_dir=tmp / "runtimes")
            out[label] = m["backends"]["torch-compile"]

    benchmark.pedantic(once, rounds=1, iterations=1)
    for label, run in out.items():
        if run["status"] == "ok":
            pair = run["vs_eager"]
            what = f"{pair['speedup']:.2f}× vs eager (CPU {pair['cpu_speedup']:.2f}×)"
        else:
            what = f"{run['status']}: {run.get('reason') or run.get('error')}"
        print(f"\n  {label} torch-compile: {what}")
    assert all(run["status"] == "ok" for run in out.values()), out


def test_measurement_cost_of_one_model_on_every_backend(built, benchmark, tmp_path):
    """Wall time to measure the teacher on every backend from nothing cached (exports,
    conversion and the agreement check included)."""
    records, feats, _ = built
    teacher = Path(records["teacher"]["cache_dir"])
    backends = ("torch", "onnxruntime") + (("openvino",) if HAS_OV else ())
    rounds = iter(range(100))

    def once():
        m = measure_model(teacher, feats, Measure(latency_samples=60, warmup=10,
                                                  throughput_samples=64, backends=backends),
                          baseline=teacher, cache_dir=tmp_path / f"r{next(rounds)}")
        assert all(run["status"] == "ok" for run in m["backends"].values()), m

    benchmark.pedantic(once, rounds=2, iterations=1)
    print(f"\nmeasuring the teacher on {', '.join(backends)} with nothing cached: median "
          f"{benchmark.stats.stats.median:.1f} s (the suite's settings: 60 latency samples)")
