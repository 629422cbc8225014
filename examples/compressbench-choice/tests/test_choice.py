"""The multiple-choice kind's own tests: its inputs through the core's batching, and a real run
(teacher, KD student, the student in int8 ONNX Runtime) through the ``compressbench`` command,
scored, exported to ONNX with a choices axis, measured on ONNX Runtime and reported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import compressbench_choice as plugin
import numpy as np
import pytest
import torch

from compressbench import api


def test_the_kind_and_its_task_register_through_the_entry_point():
    assert api.task_kind("multiple-choice") is plugin.MULTIPLE_CHOICE
    pm = api.get_plugin_manager()  # what `compressbench plugins` lists
    assert pm.task_kinds.owners["multiple-choice"] == pm.tasks.owners["toy-copa"] == "choice"


def tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(api.resolve_model_ref("embedded"))


def test_examples_become_k_rows_and_batches_b_k_t():
    examples = plugin.load_copa("dev", None)[:3]
    feats = plugin.MULTIPLE_CHOICE.encode(tokenizer(), examples, 32)
    assert [len(f["input_ids"]) for f in feats] == [2, 2, 2]  # K rows each
    batch = api.collate(feats)
    width = max(api.n_tokens(f) for f in feats)
    assert batch["input_ids"].shape == (3, 2, width)  # (B, K, T)
    assert batch["attention_mask"].shape == (3, 2, width)
    assert batch["labels"].tolist() == [ex.label for ex in examples]
    for i, f in enumerate(feats):  # every row padded on its own, the mask marks its tokens
        for k, row in enumerate(f["input_ids"]):
            assert batch["input_ids"][i, k, :len(row)].tolist() == row
            assert int(batch["attention_mask"][i, k].sum()) == len(row)
    numpy = api.as_batch(feats)  # what the measuring child feeds a runtime
    assert all(numpy[k].shape == (3, 2, width) for k in numpy)
    assert (numpy["input_ids"] == batch["input_ids"].numpy()).all()


def test_a_malformed_line_is_set_aside_with_its_place(tmp_path):
    (tmp_path / "dev.tsv").write_text("premise\tchoice1\tchoice2\tlabel\n"
                                      "a\tb\tc\t1\nbroken line\nx\ty\tz\t3\nd\te\tf\t2\n")
    with pytest.warns(UserWarning) as seen:
        got = plugin.read_copa(tmp_path / "dev.tsv")
    assert [ex.label for ex in got] == [0, 1]
    assert {str(w.message).split(":")[1] for w in seen} == {"3", "4"}


def test_bootstrap_statistic_matches_the_metric():
    kind = plugin.MULTIPLE_CHOICE
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 2, 60).tolist(), rng.integers(0, 2, 60).tolist()

    class Task:
        labels, metrics = plugin.CHOICES, kind.default_metrics

    assert kind.resample_metric("accuracy", gold, pred, np.arange(60)[None, :])[0] == \
        pytest.approx(kind.score(Task, gold, pred)["accuracy"])


def tiny_teacher(folder: Path) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def test_a_suite_runs_exports_measures_and_reports_the_kind(tmp_path):
    teacher = tiny_teacher(tmp_path / "teacher")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""version: 1
name: choice-example
teacher: {{model: {teacher}, training: {{epochs: 2, learning_rate: 3.0e-3}}}}
tasks: [toy-copa]
methods:
  - name: kd-1L-ort-int8
    chain:
      - {{name: kd, student: {{layers: 1}}}}
      - {{name: quant-ort}}
training: {{epochs: 1, batch_size: 16, learning_rate: 3.0e-3, max_seq_length: 32}}
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
    assert {r["label"] for r in records} == {"teacher", "kd-1L-ort-int8"}
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    for r in records:
        assert r["task_kind"] == "multiple-choice" and "accuracy" in r["metrics"]
    # the recorded accuracy is that of the saved predictions against the saved gold answers
    gold = json.loads((run / "references" / "toy-copa.json").read_text())["splits"]["dev"]
    assert len(gold["label"]) == 80
    for r in records:
        (preds_file,) = [p for p in (run / "predictions").iterdir()
                         if p.name.startswith(r["job_id"].replace("/", "__"))] or \
            [p for p in (run / "predictions").iterdir() if r["label"] in p.name][:1]
        preds = json.loads(preds_file.read_text())["dev"]
        assert np.mean(np.asarray(preds) == np.asarray(gold["label"])) == \
            pytest.approx(r["metrics"]["accuracy"])
    # the teacher ran in ONNX Runtime from a graph with a choices axis, agreeing with torch
    ort = next(r for r in records if r["label"] == "teacher")["measure"]["backends"]["onnxruntime"]
    assert ort["status"] == "ok", ort
    assert ort["agreement"]["prediction_agreement"] == 1.0
    assert ort["agreement"]["max_abs_logit_diff"] < 1e-3
    # the KD student, quantized to int8 in ONNX Runtime: saved, scored and timed in its format
    int8 = next(r for r in records if r["label"] == "kd-1L-ort-int8")
    assert int8["model"]["format"] == "onnx"
    assert int8["measure"]["backends"]["onnxruntime"]["latency_ms"]["p50"] > 0
    md = (run / "report.md").read_text()  # written by `run` itself
    assert "toy-copa" in md and "kd-1L-ort-int8" in md
    assert " / 2) " in md  # the kind's examples table: the premise with its candidates
