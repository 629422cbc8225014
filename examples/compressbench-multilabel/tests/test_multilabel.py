"""The example task kind's own tests: its losses and statistics, and a real run (teacher, KD
student, the student in int8 ONNX Runtime) through the ``compressbench`` command, scored and
reported by the kind, measured on ONNX Runtime."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import compressbench_multilabel as plugin
import numpy as np
import pytest
import torch

from compressbench import api


def test_the_kind_and_its_task_register_through_the_entry_point():
    assert api.task_kind("multilabel") is plugin.MULTILABEL
    pm = api.get_plugin_manager()  # what `compressbench plugins` lists
    assert pm.task_kinds.owners["multilabel"] == pm.tasks.owners["toy-topics"] == "multilabel"


def test_losses_are_zero_only_at_the_target_and_shaped_per_label():
    kind = plugin.MULTILABEL
    z = torch.tensor([[2.0, -1.0, 0.5, -3.0]])  # (B, C)
    assert kind.soft_loss(z, z, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    assert kind.soft_loss(-z, z, 2.0).item() > 0.1
    labels = kind.label_value([1, 0, 1, 0]).unsqueeze(0)  # (1, C)
    assert kind.task_loss(z, labels).item() < kind.task_loss(-z, labels).item()
    assert kind.predictions(z, None, [0]) == [[1, 0, 1, 0]]


def test_bootstrap_statistic_matches_the_metric_on_the_whole_split():
    kind = plugin.MULTILABEL
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, (50, 4)).tolist()
    pred = rng.integers(0, 2, (50, 4)).tolist()
    whole = np.arange(50)[None, :]

    class Task:
        labels, metrics = plugin.TOPICS, kind.default_metrics

    scores = kind.score(Task, gold, pred)
    for metric in kind.default_metrics:
        assert kind.resample_metric(metric, gold, pred, whole)[0] == \
            pytest.approx(scores[metric])


def tiny_teacher(folder: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(api.resolve_model_ref("embedded")).save_pretrained(folder)
    return folder


def test_a_suite_runs_scores_measures_and_reports_the_kind(tmp_path):
    teacher = tiny_teacher(tmp_path / "teacher")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""version: 1
name: multilabel-example
teacher: {{model: {teacher}, training: {{epochs: 2, learning_rate: 2.0e-3}}}}
tasks: [toy-topics]
methods:
  - {{name: kd, label: kd-1L, student: {{layers: 1}}}}
  - name: kd-1L-ort-int8
    chain:
      - {{name: kd, student: {{layers: 1}}}}
      - {{name: quant-ort}}
training: {{epochs: 1, batch_size: 16, learning_rate: 2.0e-3, max_seq_length: 48}}
measure: {{latency_samples: 8, warmup: 1, throughput_samples: 8,
          backends: [torch, onnxruntime]}}
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "compressbench", "run", str(suite),
                           "--output", str(run), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {r["label"] for r in records} == {"teacher", "kd-1L", "kd-1L-ort-int8"}
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    for r in records:
        assert r["task_kind"] == "multilabel"
        assert set(r["metrics"]) >= {"micro_f1", "macro_f1", "exact_match"}
    # the recorded metric is the kind's statistic on the saved predictions and gold labels
    gold = json.loads((run / "references" / "toy-topics.json").read_text())["splits"]["dev"]
    assert len(gold["label"]) == 80 and len(gold["label"][0]) == len(plugin.TOPICS)
    (preds_file,) = [p for p in (run / "predictions").iterdir() if "teacher" in p.name]
    preds = json.loads(preds_file.read_text())["dev"]
    whole = np.arange(len(preds))[None, :]
    teacher_rec = next(r for r in records if r["label"] == "teacher")
    assert plugin.MULTILABEL.resample_metric("micro_f1", gold["label"], preds, whole)[0] == \
        pytest.approx(teacher_rec["metrics"]["micro_f1"])
    ort = next(r for r in records if r["label"] == "kd-1L")["measure"]["backends"]["onnxruntime"]
    assert ort["status"] == "ok"
    assert 0.9 <= ort["agreement"]["prediction_agreement"] <= 1.0  # decisions, per label
    md = (run / "report.md").read_text()  # written by `run` itself
    assert "toy-topics" in md and "micro_f1" in md
    assert "per label (precision, recall, F1)" in md  # the kind's own error analysis
    assert "sports P / R / F1" in md
