"""Pruning and quantization on tiny models: the mechanics in-process (masks, schedules, head and
neuron removal, quantized modules, saving formats), then every method and chain through the
real runner, and ``compressbench export``."""
from __future__ import annotations

import json
from itertools import pairwise

import pytest
import torch
from compressbench_plugins.bilstm import BiLSTMStudent
from compressbench_plugins.prune import (
    MagnitudeMasks,
    blocks,
    choose_heads,
    cubic_sparsity,
    expand,
    prunable_weights,
    remove_heads,
    shrink_linear,
    sparsity_of,
)
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from compressbench import results
from compressbench.cli import main
from compressbench.errors import ConfigError
from compressbench.models import (
    count_parameters,
    load_model,
    load_sparse,
    save_model,
    saved_format,
    weights_size,
    write_sparse,
)
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import make_data_dir, suite_file


def tiny_bert(layers=2, heads=4, seed=0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=64,
                        max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def tiny_distilbert() -> DistilBertForSequenceClassification:
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=64, num_labels=2)
    return DistilBertForSequenceClassification(config).eval()


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(1, 100, (3, 7), generator=g),
            "attention_mask": torch.ones(3, 7, dtype=torch.long)}


def logits(model, x):
    with torch.no_grad():
        out = model(**x)
    return (out.logits if hasattr(out, "logits") else out).float()


# --------------------------------------------------------------------------- magnitude

def test_magnitude_masks_reach_the_sparsity_globally_and_only_in_the_encoder():
    model = tiny_bert()
    with torch.no_grad():  # layer 0 ten times larger: a global ranking prunes layer 1 more
        for m in model.bert.encoder.layer[0].modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(10)
    embeddings = model.bert.embeddings.word_embeddings.weight.clone()
    head = model.classifier.weight.clone()
    weights = prunable_weights(model)
    assert all(".encoder.layer." in k for k in weights) and len(weights) == 12  # 6 per layer
    masks = MagnitudeMasks(weights)
    masks.prune_to(0.8)
    assert sparsity_of(weights) == pytest.approx(0.8, abs=1e-4)
    layer0 = {k: w for k, w in weights.items() if ".layer.0." in k}
    layer1 = {k: w for k, w in weights.items() if ".layer.1." in k}
    assert sparsity_of(layer0) < 0.7
    assert sparsity_of(layer1) > 0.9
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, embeddings)
    assert torch.equal(model.classifier.weight, head)
    # an update of the weights is undone by apply(): the mask is permanent
    with torch.no_grad():
        for w in weights.values():
            w.add_(1.0)
    masks.apply()
    assert sparsity_of(weights) == pytest.approx(0.8, abs=1e-4)


def test_cubic_schedule_of_zhu_and_gupta():
    assert cubic_sparsity(0, 0, 100, 0.0, 0.8) == 0.0
    assert cubic_sparsity(50, 0, 100, 0.0, 0.8) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    assert cubic_sparsity(100, 0, 100, 0.0, 0.8) == 0.8
    assert cubic_sparsity(150, 0, 100, 0.1, 0.8) == 0.8
    values = [cubic_sparsity(t, 0, 100, 0.0, 0.9) for t in range(0, 101, 10)]
    steps = [b - a for a, b in pairwise(values)]
    assert all(x > y for x, y in pairwise(steps))  # prunes fast first, then slowly


def test_prunable_weights_of_distilbert_and_of_a_bilstm():
    d = prunable_weights(tiny_distilbert())
    assert len(d) == 12 and all(".transformer.layer." in k for k in d)
    lstm = BiLSTMStudent(100, 8, 6, 5, 2, "classification", pair=False)
    names = set(prunable_weights(lstm))
    assert "classifier.0.weight" in names and "classifier.2.weight" not in names  # output kept
    assert {"lstm.weight_ih_l0", "lstm.weight_hh_l0_reverse"} <= names


def test_sparse_storage_round_trips_and_is_smaller(tmp_path):
    model = tiny_bert()
    masks = MagnitudeMasks(prunable_weights(model))
    masks.prune_to(0.8)
    assert write_sparse(model, tmp_path / "s.safetensors")
    state = load_sparse(tmp_path / "s.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    dense = tiny_bert()
    assert not write_sparse(dense, tmp_path / "d.safetensors")  # nothing sparse: no file
    folder = save_model(model, tmp_path / "m", "classification")
    assert (folder / "sparse.safetensors").stat().st_size < weights_size(folder)


# --------------------------------------------------------------------------- heads and FFN

@pytest.mark.parametrize("make", [tiny_bert, tiny_distilbert])
def test_removing_heads_equals_gating_them_off(make):
    model = make()
    x = inputs()
    layers = blocks(model, "prune-heads")
    keep = [torch.tensor([0, 2]), torch.tensor([3])]
    # reference: zero the removed heads' outputs in place of the real removal
    gates = []
    for block, heads in zip(layers, keep):
        gate = torch.zeros(4)
        gate[heads] = 1
        size = block.head_size
        gates.append(model.get_submodule(block.attn_out).register_forward_pre_hook(
            lambda m, a, g=gate, s=size: (a[0] * g.repeat_interleave(s),)))
    expected = logits(model, x)
    for h in gates:
        h.remove()
    before, _ = count_parameters(model)
    remove_heads(model, layers, keep)
    assert model.get_submodule(layers[0].query).weight.shape == (2 * 8, 32)  # 2 heads of 8
    assert model.get_submodule(layers[1].attn_out).weight.shape == (32, 8)
    after, _ = count_parameters(model)
    assert before - after == 5 * (3 * (8 * 32 + 8) + 32 * 8)  # 5 heads: q, k, v rows; out cols
    torch.testing.assert_close(logits(model, x), expected, atol=1e-5, rtol=1e-5)


def test_choose_heads_keeps_one_per_layer_and_ranks_after_normalising():
    importance = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 0.1, 0.2, 30.0])]
    keep = choose_heads(importance, 0.5, normalize=True)  # / l2 norm: 5.48 and 31.6
    assert [k.tolist() for k in keep] == [[1, 2, 3], [3]]
    keep = choose_heads(importance, 0.5, normalize=False)
    assert [k.tolist() for k in keep] == [[2, 3], [0, 3]]
    keep = choose_heads([torch.tensor([0.0, 0.0]), torch.tensor([5.0, 6.0])], 0.75, True)
    assert [len(k) for k in keep] == [1, 1]  # a layer never loses its last head


def test_head_pruned_model_saves_as_weights_and_reloads(tmp_path):
    model = tiny_bert()
    remove_heads(model, blocks(model, "prune-heads"), [torch.tensor([1]), torch.tensor([0, 1])])
    x = inputs()
    folder = save_model(model, tmp_path / "m", "classification")
    assert saved_format(folder) == "weights"  # uneven heads: the config cannot describe it
    meta = json.loads((folder / "compressbench.json").read_text())
    assert meta["linear_shapes"]["bert.encoder.layer.0.attention.self.query"] == [8, 32]
    assert meta["linear_shapes"]["bert.encoder.layer.1.attention.self.query"] == [16, 32]
    assert "bert.encoder.layer.0.intermediate.dense" not in meta["linear_shapes"]
    torch.testing.assert_close(logits(load_model(folder), x), logits(model, x))


def test_ffn_shrinks_to_an_hf_model_that_reloads(tmp_path):
    model = tiny_bert()
    x = inputs()
    keep = torch.tensor([1, 5, 9, 40])
    layers = blocks(model, "prune-ffn")
    hooks = []
    for block in layers:
        gate = torch.zeros(64)
        gate[keep] = 1
        hooks.append(model.get_submodule(block.ffn_out).register_forward_pre_hook(
            lambda m, a, g=gate: (a[0] * g,)))
    expected = logits(model, x)
    for h in hooks:
        h.remove()
    for block in layers:
        shrink_linear(model, block.ffn_in, keep, 0)
        shrink_linear(model, block.ffn_out, keep, 1)
    model.config.intermediate_size = 4
    torch.testing.assert_close(logits(model, x), expected, atol=1e-5, rtol=1e-5)
    folder = save_model(model, tmp_path / "m", "classification")
    assert saved_format(folder) == "hf"
    reloaded = load_model(folder)
    assert reloaded.bert.encoder.layer[0].intermediate.dense.weight.shape == (4, 32)
    torch.testing.assert_close(logits(reloaded, x), expected, atol=1e-5, rtol=1e-5)


def test_structured_pruning_refuses_a_bilstm_with_a_clear_error():
    with pytest.raises(ConfigError, match="prune-heads: needs a BERT-like or DistilBERT"):
        blocks(BiLSTMStudent(100, 8, 6, 5, 2, "classification", pair=False), "prune-heads")


def test_pruning_after_quantization_says_to_reorder_the_chain():
    q = quantize("quant-dynamic", tiny_bert())
    with pytest.raises(ConfigError, match="put the quant-\\* step after the pruning"):
        prunable_weights(q)


def test_expand_heads_to_features():
    assert expand(torch.tensor([0, 2]), 3).tolist() == [0, 1, 2, 6, 7, 8]


# --------------------------------------------------------------------------- quantization

class Ctx:
    """The one thing quantization methods use from the context: the model to start from."""

    def __init__(self, model):
        self._model = model

    def model(self):
        return self._model


def quantize(name, model, **params):
    method = get_plugin_manager(entry_points=True).methods.get(name)
    return method.build(Ctx(model), method.Params(**params))


@pytest.mark.parametrize("per_channel", [False, True])
def test_quant_dynamic_replaces_every_linear(tmp_path, per_channel):
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    model = tiny_bert()
    total, _ = count_parameters(model)
    x = inputs()
    reference = logits(model, x)
    q = quantize("quant-dynamic", model, per_channel=per_channel)
    linears = [m for m in q.modules() if isinstance(m, nn.Linear)]
    quantized = [m for m in q.modules() if isinstance(m, QLinear)]
    assert not linears and len(quantized) == 2 * 6 + 2  # encoder, pooler, classifier
    scheme = quantized[0].weight().qscheme()
    assert scheme == (torch.per_channel_affine if per_channel else torch.per_tensor_affine)
    assert count_parameters(q)[0] == total
    assert (logits(q, x) - reference).abs().max() < 0.1  # int8 stays close
    folder = save_model(q, tmp_path / "q", "classification")
    assert saved_format(folder) == "weights"
    torch.testing.assert_close(logits(load_model(folder), x), logits(q, x))


def test_quant_dynamic_quantizes_the_bilstm_lstm(tmp_path):
    from torch.ao.nn.quantized.dynamic import LSTM as QLSTM

    from compressbench import built_by

    shape = dict(vocab_size=30522, embedding_dim=8, hidden_size=6, mlp_size=5, num_labels=2,
                 kind="classification", pair=False)
    model = built_by(BiLSTMStudent(**shape).eval(), BiLSTMStudent, **shape)
    q = quantize("quant-dynamic", model)
    assert any(isinstance(m, QLSTM) for m in q.modules())
    assert count_parameters(q)[0] == count_parameters(BiLSTMStudent(**shape))[0]
    assert logits(q, inputs()).shape == (3, 2)
    folder = save_model(q, tmp_path / "q", "classification")  # packed LSTM cells, no pickle
    assert saved_format(folder) == "weights"
    torch.testing.assert_close(logits(load_model(folder), inputs()), logits(q, inputs()))


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int8-weight-only"])
def test_quant_torchao_weights_and_state_format(tmp_path, scheme):
    pytest.importorskip("torchao", reason="quant-torchao needs the torchao extra")
    model = tiny_bert()
    x = inputs()
    reference = logits(model, x)
    q = quantize("quant-torchao", model, scheme=scheme)
    weight = q.bert.encoder.layer[0].attention.self.query.weight
    assert type(weight).__module__.startswith("torchao") and weight.qdata.dtype == torch.int8
    assert (logits(q, x) - reference).abs().max() < 0.1
    folder = save_model(q, tmp_path / "q", "classification")
    assert saved_format(folder) == "weights"
    torch.testing.assert_close(logits(load_model(folder), x), logits(q, x))


def test_quant_torchao_on_a_bilstm_saves_as_weights(tmp_path):
    pytest.importorskip("torchao")
    from compressbench import built_by

    shape = dict(vocab_size=30522, embedding_dim=8, hidden_size=6, mlp_size=5, num_labels=2,
                 kind="classification", pair=False)
    q = quantize("quant-torchao", built_by(BiLSTMStudent(**shape), BiLSTMStudent, **shape))
    folder = save_model(q, tmp_path / "q", "classification")
    torch.testing.assert_close(logits(load_model(folder), inputs()), logits(q, inputs()))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_quant_half_keeps_the_dtype_through_saving(tmp_path, dtype):
    q = quantize("quant-half", tiny_bert(), dtype=dtype)
    folder = save_model(q, tmp_path / "h", "classification")
    assert saved_format(folder) == "hf"
    assert load_model(folder).bert.encoder.layer[0].output.dense.weight.dtype == getattr(
        torch, dtype)
    assert weights_size(folder) < 0.6 * weights_size(
        save_model(tiny_bert(), tmp_path / "f", "classification"))


# --------------------------------------------------------------------------- the runner

METHODS = """
  - {name: prune-magnitude, label: magnitude-50, sparsity: 0.5}
  - {name: prune-magnitude, label: magnitude-80-kd, sparsity: 0.8, recovery: kd}
  - {name: prune-magnitude, label: gradual-90, sparsity: 0.9, schedule: gradual,
     recovery: task, frequency: 1, ramp: 0.5, training: {epochs: 2}}
  - {name: prune-heads, label: heads, fraction: 0.4, recovery: kd}
  - {name: prune-ffn, label: ffn, fraction: 0.5, recovery: task}
  - {name: quant-dynamic, label: int8}
  - {name: quant-torchao, label: torchao}
  - {name: quant-half, label: fp16}
  - name: pkd-int8
    chain: [{name: pkd-skip, student: {layers: 2}}, {name: quant-dynamic}]
  - name: pkd-heads-int8
    chain: [{name: pkd-skip, student: {layers: 2}}, {name: prune-heads, fraction: 0.5},
            {name: quant-dynamic}]
  - name: bilstm-int8
    chain: [{name: bilstm, n_aug: 1, p_pos: 0, hidden_size: 8, mlp_size: 8},
            {name: quant-dynamic}]
"""


def collector():
    from compressbench import hookimpl

    class Collect:
        def __init__(self):
            self.hits = []

        @hookimpl
        def job_event(self, job, event, data):
            if event == "cache_hit":
                self.hits.append((job.id, data["method"]))

    return Collect()


@pytest.fixture(scope="module")
def compress_run(tiny_teacher4, tmp_path_factory):
    """Every method on sst2 (measured: each saving format through the measuring subprocess),
    stsb and conll2003 (not measured, to keep the suite fast), sharing one cache."""
    pytest.importorskip("torchao")
    tmp = tmp_path_factory.mktemp("compress")
    data = make_data_dir(tmp / "data")
    pm = get_plugin_manager()
    hits = collector()
    pm.register(hits, "collect")
    records = {}
    for name, tasks, measure in [("suite.yaml", "[sst2]", ("{latency_samples: 3, warmup: 1, "
                                  "throughput_samples: 4, throughput_batch_size: 4}")),
                                 ("other.yaml", "[stsb, conll2003]", "{enabled: false}")]:
        text = f"""
version: 1
teacher: {{model: {tiny_teacher4}, training: {{epochs: 2}}}}
tasks: {tasks}
methods: {METHODS}
training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_val_samples: 8}}
measure: {measure}
"""
        run_dir = tmp / ("run" if name == "suite.yaml" else "run-other")
        for r in run_suite(load_suite(suite_file(tmp, text, name)), pm, data_dir=data,
                           run_dir=run_dir, cache_dir=tmp / "cache"):
            records[r["job_id"]] = {**r, "run_dir": run_dir}
    return tmp, records, hits.hits


def test_every_method_and_chain_runs_and_is_measured(compress_run):
    _, records, _ = compress_run
    failed = [(j, r.get("error")) for j, r in records.items() if r["status"] != "ok"]
    assert not failed
    assert len(records) == 3 * 12
    for r in records.values():  # every format went through the measuring subprocess
        if r["task"] == "sst2":
            m = r["measure"]["backends"]["torch"]
            assert m["latency_ms"]["n"] == 3
            if r["label"] != "teacher":  # timed alternately with the teacher, too
                assert m["paired"]["reference_ms"]["n"] == 3
                assert m["vs_eager"] == m["paired"]
                assert m["paired"]["ci95"][0] <= m["paired"]["ci95"][1]
            else:  # the teacher against a second copy of itself: the protocol's control
                assert m["control"]["reference"] == "control"
                assert m["control"]["reference_ms"]["n"] == 3 and m["vs_eager"] is None
    formats = {r["label"]: r["model"]["format"] for r in records.values()
               if r["task"] == "sst2"}
    assert formats["int8"] == formats["heads"] == formats["pkd-heads-int8"] == "weights"
    assert formats["torchao"] == "weights"
    assert formats["magnitude-50"] == formats["ffn"] == formats["fp16"] == "hf"


def test_pruned_models_reach_their_targets(compress_run):
    tmp, records, _ = compress_run
    for label, target in [("magnitude-50", 0.5), ("magnitude-80-kd", 0.8), ("gradual-90", 0.9)]:
        for task in ("sst2", "stsb", "conll2003"):
            r = records[f"{task}/{label}/seed42"]
            model = load_model(results.model_path(r["run_dir"], r))
            assert sparsity_of(prunable_weights(model)) == pytest.approx(target, abs=1e-3)
            assert r["model"]["nonzero_parameters"] < r["model"]["parameters"]
            assert r["model"]["sparse_size_bytes"] < r["model"]["size_bytes"]
    teacher = records["sst2/teacher/seed42"]["model"]
    heads = records["sst2/heads/seed42"]["model"]
    ffn = records["sst2/ffn/seed42"]["model"]
    assert heads["parameters"] < teacher["parameters"]
    assert ffn["parameters"] < teacher["parameters"]
    model = load_model(results.model_path(tmp / "run", records["sst2/heads/seed42"]))
    heads_left = sum(layer.attention.self.query.out_features // 16
                     for layer in model.bert.encoder.layer)
    assert heads_left == 8 - round(0.4 * 8)  # 4 layers x 2 heads, 40% removed


def test_chains_reuse_the_cached_prefix(compress_run):
    _, records, hits = compress_run
    for task in ("sst2", "stsb", "conll2003"):
        first = records[f"{task}/pkd-int8/seed42"]["training"][0]
        again = records[f"{task}/pkd-heads-int8/seed42"]["training"][0]
        assert first == again  # one PKD student, read back from the cache
        assert (f"{task}/pkd-heads-int8/seed42", "pkd-skip") in hits
    r = records["sst2/pkd-heads-int8/seed42"]
    assert [s["method"] for s in r["steps"]] == ["pkd-skip", "prune-heads", "quant-dynamic"]
    assert r["model"]["dtypes"].get("qint8", 0) > 0


def test_report_shows_a_chain_as_one_row_with_its_steps(compress_run, capsys):
    tmp, _, _ = compress_run
    assert main(["report", str(tmp / "run"), "--format", "md"]) == 0
    text = (tmp / "run" / "report.md").read_text()
    sst2 = text.split("\n## sst2\n")[1].split("\n### ")[0]  # the task's own table
    rows = [line for line in sst2.splitlines() if line.startswith("| pkd-heads-int8 ")]
    assert len(rows) == 1
    assert "pkd-skip → prune-heads → quant-dynamic" in rows[0]
    assert "unstructured sparsity" in text  # the dense-kernel caveat next to sparse rows


@pytest.mark.parametrize("label", ["magnitude-50", "heads", "int8", "torchao", "fp16",
                                   "bilstm-int8"])
def test_exported_model_reloads_and_predicts_as_in_the_run(compress_run, tmp_path, label):
    from compressbench import data as D
    from compressbench.models import load_tokenizer
    from compressbench.runner import resolve_task
    from compressbench.training import predict

    tmp, records, _ = compress_run
    out = tmp_path / "export"
    assert main(["export", str(tmp / "run"), "--task", "sst2", "--method", label,
                 "-o", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {"0o644"}  # shareable
    record = records[f"sst2/{label}/seed42"]
    assert f"{record['score']:.4f}" in card and "## Speed, per runtime" in card
    assert "| torch | " in card  # its PyTorch latency row
    import yaml
    meta = yaml.safe_load(card.split("---\n")[1])  # Hub metadata
    assert meta["pipeline_tag"] == "text-classification" and meta["datasets"] == ["nyu-mll/glue"]
    scored = meta["model-index"][0]["results"][0]
    assert scored["dataset"]["config"] == "sst2" and scored["dataset"]["split"] == "validation"
    assert {"type": record["main_metric"], "value": round(record["score"], 4)} in \
        scored["metrics"]
    lengths = {(step.get("settings") or {}).get("max_seq_length")
               for step in record["training"]} - {None}
    for length in lengths:  # the length the run truncated to, to reproduce its numbers
        assert f"max_seq_length {length}" in card
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()
    model = load_model(out)
    if record["model"]["format"] == "hf":  # transformers alone loads it too
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(out).eval()
        assert model.config.id2label == {0: "negative", 1: "positive"}  # not LABEL_1
    suite = load_suite(tmp / "suite.yaml")
    task = resolve_task(suite, "sst2", get_plugin_manager())
    prepared = D.prepare(task, tmp / "data", suite.training)
    feats = D.encode(task, load_tokenizer(str(out)), prepared.evals["dev"], 32)
    preds = predict(model, task, feats)
    saved = json.loads((tmp / "run" / "predictions" / f"sst2__{label}__seed42.json")
                       .read_text())["dev"]
    assert preds == saved


def test_export_errors_name_the_fix(compress_run, tmp_path, capsys):
    tmp, _, _ = compress_run
    assert main(["export", str(tmp / "run"), "--task", "sst2", "--method", "int9",
                 "-o", str(tmp_path / "x")]) == 2
    assert "Did you mean: sst2/int8" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main(["export", str(tmp / "run"), "--task", "sst2", "--method", "int8",
                 "-o", str(tmp_path / "full")]) == 2
    assert "--force" in capsys.readouterr().err


def test_export_to_onnx_without_the_extra_is_one_line(compress_run, tmp_path, capsys,
                                                       monkeypatch):
    import sys
    tmp, _, _ = compress_run
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if compressbench[onnx] were missing
    assert main(["export", str(tmp / "run"), "--task", "sst2", "--method", "magnitude-50",
                 "--format", "onnx", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'compressbench[onnx]'" in err, err
