"""The mean-pooling student head (``student: {head: mean}``): what it computes, that a saved
model loads back with it (also after quantization), that non-BERT students are refused, that
it leaves the cache keys of [CLS] students alone, and a KD student with it through the runner,
compared with the no-distillation student with the same head, scored through ONNX Runtime."""
from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from compressbench import results, schema
from compressbench.errors import ConfigError
from compressbench.models import StudentSpec, load_model, make_student, save_model
from compressbench.models.heads import MeanPoolBertForSequenceClassification, mean_pool
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import make_data_dir, suite_file


def tiny_bert(num_labels=2) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(config).eval()


def batch():
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_the_head_reads_the_masked_mean_of_the_last_token_states():
    model = mean_pool(tiny_bert())
    assert type(model) is MeanPoolBertForSequenceClassification
    x = batch()
    with torch.no_grad():
        out = model(**x, output_hidden_states=True)
        states = model.bert(**x).last_hidden_state
        second = states[1, :3].mean(dim=0)  # its padding is not averaged in
        expected = model.classifier(torch.stack([states[0].mean(dim=0), second]))
        cls = BertForSequenceClassification.forward(model, **x).logits
    torch.testing.assert_close(out.logits, expected)
    assert len(out.hidden_states) == 3  # what the intermediate-layer losses read
    assert not torch.allclose(out.logits, cls)  # not the [CLS] pooler's


def test_a_mean_pooling_student_saves_and_loads_with_its_head(tmp_path):
    model = make_student(tiny_bert(num_labels=1), StudentSpec(layers=1, head="mean")).eval()
    assert type(model) is MeanPoolBertForSequenceClassification
    assert model.config.num_hidden_layers == 1
    folder = save_model(model, tmp_path / "m", "regression")
    loaded = load_model(folder)
    assert type(loaded) is MeanPoolBertForSequenceClassification
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, model(**batch()).logits)


def test_quantizing_a_mean_pooling_student_keeps_the_head_on_reload(tmp_path):
    from compressbench_plugins.quant import dynamic_int8

    from compressbench.models.recipes import rebuild_with

    model = dynamic_int8(mean_pool(tiny_bert()), per_channel=False, lstm=False)
    model = rebuild_with(model, dynamic_int8, per_channel=False, lstm=False)  # as quant-dynamic
    folder = save_model(model, tmp_path / "q", "classification")
    loaded = load_model(folder)
    assert type(loaded) is MeanPoolBertForSequenceClassification
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, model(**batch()).logits)


def test_other_students_and_heads_are_refused():
    torch.manual_seed(0)
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=64))
    with pytest.raises(ConfigError, match="head: mean is built for BERT"):
        mean_pool(distil)
    with pytest.raises(ValueError, match="student.head: 'max' is not one of cls, mean"):
        StudentSpec(head="max")


def test_the_default_head_leaves_cache_keys_unchanged():
    assert "head" not in schema.as_dict(StudentSpec(layers=3))
    assert schema.as_dict(StudentSpec(layers=3, head="mean"))["head"] == "mean"


def test_kd_with_a_mean_pooling_student_runs_and_meets_its_baseline(tiny_teacher, tmp_path):
    pytest.importorskip("onnxruntime")
    data = make_data_dir(tmp_path / "data")
    text = f"""
version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [stsb]
methods:
  - {{name: finetune, label: ft-mean, student: {{layers: 1, head: mean}}}}
  - {{name: kd, label: kd-mean, student: {{layers: 1, head: mean}}}}
  - {{name: kd, label: kd-cls, student: {{layers: 1}}}}
seeds: [1, 2]
training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_val_samples: 8}}
measure: {{backends: [onnxruntime], latency_samples: 2, warmup: 1, throughput_samples: 2,
          agreement_samples: 8}}
"""
    records = run_suite(load_suite(suite_file(tmp_path, text)), get_plugin_manager(),
                        data_dir=data, run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    assert not [(r["job_id"], r.get("error")) for r in records if r["status"] != "ok"]
    by = {r["job_id"]: r for r in records}
    kd = by["stsb/kd-mean/seed1"]
    assert kd["training"][-1]["student"]["class"] == "MeanPoolBertForSequenceClassification"
    assert by["stsb/kd-cls/seed1"]["training"][-1]["student"]["class"] == \
        "BertForSequenceClassification"
    assert kd["model"]["format"] == "weights"
    model = load_model(results.model_path(tmp_path / "run", kd))
    assert type(model) is MeanPoolBertForSequenceClassification
    ort = kd["measure"]["backends"]["onnxruntime"]  # the exported graph has the same head
    assert ort["status"] == "ok", ort
    assert ort["agreement"]["max_abs_logit_diff"] < 1e-3

    from compressbench.report import summarise
    table = summarise(tmp_path / "run").tables[0]
    rows = {r.label: r for r in table.rows}
    assert rows["kd-mean"].vs_baseline.other == "ft-mean"  # same head, labels alone
    assert rows["kd-cls"].vs_baseline is None  # no [CLS] student trained on labels alone
