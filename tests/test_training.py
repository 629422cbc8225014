"""The shared training loop, batching, students: on tiny in-process models."""
from __future__ import annotations

import pytest
import torch

from compressbench import data as D
from compressbench import models
from compressbench.errors import CompressBenchError, ConfigError
from compressbench.suite import Training
from compressbench.tasks import builtin_tasks
from compressbench.training import predict, set_seed, supervised_loss, train


def task(name):
    return next(t for t in builtin_tasks() if t.name == name)


def test_collate_pads_dynamically():
    feats = [{"input_ids": [101, 5, 102], "token_type_ids": [0, 0, 0], "labels": 1},
             {"input_ids": [101, 102], "token_type_ids": [0, 0], "labels": 0}]
    b = D.collate(feats)
    assert b["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["labels"].tolist() == [1, 0]
    tok = D.collate([{"input_ids": [1, 2], "labels": [D.IGNORE, 3]}, {"input_ids": [1],
                                                                       "labels": [2]}])
    assert tok["labels"].tolist() == [[D.IGNORE, 3], [2, D.IGNORE]]


def test_length_grouped_batches_cover_everything_and_group_lengths():
    lengths = [i % 37 for i in range(400)]
    batches = D.length_grouped_batches(lengths, 8, seed=1, group=50)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(400))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread / len(batches) < 3  # sorted within mega-batches: little padding
    assert batches != D.length_grouped_batches(lengths, 8, seed=2, group=50)


def test_prepare_holds_out_validation_deterministically(data_dir):
    t = task("sst2")
    cfg = Training(max_train_samples=30, max_val_samples=5)
    a, b = D.prepare(t, data_dir, cfg), D.prepare(t, data_dir, cfg)
    assert len(a.val) == 5 and len(a.train) == 30
    assert a.fingerprint == b.fingerprint
    texts = {(e.text_a, e.label) for e in a.val}
    assert a.val_source.startswith("5 examples held out")
    c = D.prepare(t, data_dir, Training(max_train_samples=30, max_val_samples=5, data_seed=1))
    assert {(e.text_a, e.label) for e in c.val} != texts or c.fingerprint != a.fingerprint


def test_token_alignment_labels_first_subword(tiny_teacher):
    t = task("conll2003")
    tok = models.load_tokenizer(str(tiny_teacher))
    from compressbench.tasks import Example
    ex = Example(["Blackburnian", "runs"], None, [1, 0])
    f = D.encode(t, tok, [ex], 32)[0]
    first = f["word_starts"][0]
    assert f["labels"][first] == 1 and f["labels"][f["word_starts"][1]] == 0
    assert f["labels"][0] == D.IGNORE and f["labels"][-1] == D.IGNORE  # [CLS], [SEP]
    assert f["word_starts"][1] - first > 1  # the first word was split into sub-words


def learn(tiny_teacher, data_dir, seed=0, epochs=4.0, **settings):
    t = task("sst2")
    cfg = Training(epochs=epochs, batch_size=8, learning_rate=3e-3, max_val_samples=8,
                   warmup_ratio=0.0, **settings)
    d = D.prepare(t, data_dir, cfg)
    tok = models.load_tokenizer(str(tiny_teacher))
    tr, va = D.encode(t, tok, d.train, 32), D.encode(t, tok, d.val, 32)
    set_seed(seed)  # the runner seeds before a method builds its model (new head init)
    model = models.load_pretrained(str(tiny_teacher), "classification", 2)
    events = []
    result = train(model, supervised_loss("classification"), t, tr, va, d.val, cfg, seed,
                   emit=lambda e, data: events.append((e, data)))
    return model, result, events, d, tok


def test_training_learns_and_selects_best_epoch(tiny_teacher, data_dir):
    model, result, events, d, tok = learn(tiny_teacher, data_dir)
    assert result.steps == 4 * ((len(d.train) + 7) // 8)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.best_score == max(h["val_score"] for h in result.history)
    assert result.best_score >= 0.75  # 7 positive and 7 negative phrases: easy to separate
    assert any(e == "validation" for e, _ in events)
    dev = D.encode(task("sst2"), tok, d.evals["dev"], 32)
    preds = predict(model, task("sst2"), dev)
    assert len(preds) == len(dev) and set(preds) <= {0, 1}


def test_training_is_deterministic(tiny_teacher, data_dir):
    a = learn(tiny_teacher, data_dir, seed=3, epochs=1.0)[0]
    b = learn(tiny_teacher, data_dir, seed=3, epochs=1.0)[0]
    c = learn(tiny_teacher, data_dir, seed=4, epochs=1.0)[0]
    wa, wb, wc = (m.classifier.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_student_layer_maps():
    assert models.layer_map(6, 3, "teacher-skip") == [0, 2, 4]
    assert models.layer_map(12, 6, "teacher-skip") == [0, 2, 4, 6, 8, 10]
    assert models.layer_map(6, 3, "teacher-first") == [0, 1, 2]
    # the layers Sanh et al.'s released DistilBERT took from BERT-base (first to last, spread)
    assert models.layer_map(12, 6, "teacher-spread") == [0, 2, 4, 7, 9, 11]
    assert models.layer_map(6, 3, "teacher-spread") == [0, 3, 5]
    assert models.layer_map(6, 1, "teacher-spread") == [0]


def test_distilbert_takes_the_spread_layers(tiny_teacher4):
    from compressbench_plugins.distilbert import make_student as distil_student

    teacher = models.load_pretrained(str(tiny_teacher4), "classification", 2)
    student = distil_student(teacher, models.StudentSpec(layers=2, init="teacher-spread"),
                             "classification")
    assert student.layer_sources == [0, 3]  # the first and the last of 4
    t = teacher.bert.encoder.layer[3].attention.self.query.weight
    s = student.distilbert.transformer.layer[1].attention.q_lin.weight
    assert torch.equal(t, s)


def test_make_student_copies_the_mapped_layers(tiny_teacher4):
    teacher = models.load_pretrained(str(tiny_teacher4), "classification", 2)
    student = models.make_student(teacher, models.StudentSpec(layers=2, init="teacher-skip"))
    assert student.config.num_hidden_layers == 2
    t_layers, s_layers = teacher.bert.encoder.layer, student.bert.encoder.layer
    assert torch.equal(s_layers[0].output.dense.weight, t_layers[0].output.dense.weight)
    assert torch.equal(s_layers[1].output.dense.weight, t_layers[2].output.dense.weight)
    first = models.make_student(teacher, models.StudentSpec(layers=2, init="teacher-first"))
    assert torch.equal(first.bert.encoder.layer[1].output.dense.weight,
                       t_layers[1].output.dense.weight)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight,
                       teacher.bert.embeddings.word_embeddings.weight)
    rand = models.make_student(teacher, models.StudentSpec(layers=1, init="random",
                                                           hidden_size=16,
                                                           num_attention_heads=2,
                                                           intermediate_size=32))
    assert rand.config.hidden_size == 16


def test_a_narrow_student_truncates_the_teacher_layers(tiny_teacher4, tmp_path, data_dir):
    """shrink: truncate keeps the first rows and columns of every mapped teacher weight."""
    teacher = models.load_pretrained(str(tiny_teacher4), "classification", 2)  # H 32, 2 heads
    spec = models.StudentSpec(layers=2, hidden_size=16, intermediate_size=48, shrink="truncate")
    student = models.make_student(teacher, spec)
    c = student.config
    assert (c.hidden_size, c.num_attention_heads, c.intermediate_size) == (16, 1, 48)
    t, s = teacher.bert.encoder.layer[2], student.bert.encoder.layer[1]  # teacher-skip: [0, 2]
    assert torch.equal(s.attention.self.query.weight, t.attention.self.query.weight[:16, :16])
    assert torch.equal(s.intermediate.dense.weight, t.intermediate.dense.weight[:48, :16])
    assert torch.equal(s.output.LayerNorm.weight, t.output.LayerNorm.weight[:16])
    assert torch.equal(student.bert.embeddings.word_embeddings.weight,
                       teacher.bert.embeddings.word_embeddings.weight[:, :16])
    assert torch.equal(student.classifier.weight, teacher.classifier.weight[:, :16])
    x = {"input_ids": torch.tensor([[101, 2000, 102]])}
    assert student(**x).logits.shape == (1, 2)
    with pytest.raises(ValueError, match="needs `shrink: truncate`"):
        models.StudentSpec(layers=1, hidden_size=16)
    with pytest.raises(ConfigError, match="not a multiple of the teacher's head size 16"):
        models.make_student(teacher, models.StudentSpec(hidden_size=24, shrink="truncate"))
    with pytest.raises(ConfigError, match="wider than the teacher's 64"):
        models.make_student(teacher, models.StudentSpec(intermediate_size=80, shrink="truncate"))
    # in a suite: checked before anything trains, then built and recorded as truncated
    from tests.conftest import suite_file
    from tests.test_runner import suite_text
    bad = "  - {name: kd, student: {layers: 1, hidden_size: 24, shrink: truncate}}\n"
    path = suite_file(tmp_path, suite_text(tiny_teacher4, bad))
    from compressbench.cli import main
    assert main(["validate", str(path), "--data-dir", str(data_dir)]) == 2
    good = "  - {name: kd, student: {layers: 1, hidden_size: 16, shrink: truncate}}\n"
    path = suite_file(tmp_path, suite_text(tiny_teacher4, good))
    assert main(["run", str(path), "--data-dir", str(data_dir), "--output",
                 str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-report"]) == 0
    import json
    rec = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().split("\n")
           if x][-1]
    student = rec["training"][0]["student"]  # what the step's describe_student recorded
    assert rec["status"] == "ok" and student["shrink"] == "truncate"
    assert (student["hidden_size"], student["heads"], student["init"]) == (16, 1, "teacher-skip")


def test_save_load_roundtrip(tmp_path, tiny_teacher):
    model = models.load_pretrained(str(tiny_teacher), "regression", 1).eval()
    folder = models.save_model(model, tmp_path / "m", "regression")
    again = models.load_model(folder)
    x = {"input_ids": torch.tensor([[101, 2000, 102]])}
    assert torch.allclose(model(**x).logits, again(**x).logits)
    assert models.weights_size(folder) > 0
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))  # no config, no declared factory
    with pytest.raises(CompressBenchError, match="compressbench.built_by"):
        models.save_model(plain, tmp_path / "p", "classification")
    assert not (tmp_path / "p").exists()  # nothing half-written


def test_loss_terms_reach_the_events_and_the_epoch_history(tiny_teacher, data_dir):
    """A loss returning (loss, {"term": value}): each term is sent with train_step events and
    averaged per epoch into the history, beside the loss itself."""
    t = task("sst2")
    cfg = Training(epochs=2, batch_size=8, learning_rate=1e-3, max_val_samples=8)
    d = D.prepare(t, data_dir, cfg)
    tok = models.load_tokenizer(str(tiny_teacher))
    tr, va = D.encode(t, tok, d.train, 32), D.encode(t, tok, d.val, 32)
    plain = supervised_loss("classification")
    seen = []

    def with_terms(model, batch):
        loss = plain(model, batch)
        seen.append(loss.item())
        return loss * 1.0, {"ce": loss.item(), "half": loss.item() / 2}

    events = []
    model = models.load_pretrained(str(tiny_teacher), "classification", 2)
    result = train(model, with_terms, t, tr, va, d.val, cfg, 0,
                   emit=lambda e, data: events.append((e, data)))
    per_epoch = len(seen) // 2
    first = result.history[0]
    assert first["train_ce"] == pytest.approx(sum(seen[:per_epoch]) / per_epoch)
    assert first["train_half"] == pytest.approx(first["train_ce"] / 2)
    assert first["train_loss"] == pytest.approx(first["train_ce"])
    assert result.history[1]["train_ce"] == pytest.approx(sum(seen[per_epoch:]) / per_epoch)
    last = [data for e, data in events if e == "train_step"][-1]
    assert last["ce"] == pytest.approx(seen[-1]) and last["half"] == pytest.approx(seen[-1] / 2)


def test_the_loop_follows_the_thread_count_an_executor_sets(tiny_teacher, data_dir):
    """The ``threads`` an executor passes in is re-read at every step: a job whose neighbour
    finished takes the freed core mid-run (the history records the threads each epoch ended
    with)."""
    import torch

    t = task("sst2")
    cfg = Training(epochs=2, batch_size=8, learning_rate=1e-3, max_val_samples=8)
    d = D.prepare(t, data_dir, cfg)
    tok = models.load_tokenizer(str(tiny_teacher))
    tr, va = D.encode(t, tok, d.train, 32), D.encode(t, tok, d.val, 32)
    per_epoch = (len(tr) + 7) // 8
    steps = []
    threads = lambda: 1 if len(steps) < per_epoch else 2  # noqa: E731
    plain = supervised_loss("classification")

    def counting(model, batch):
        steps.append(torch.get_num_threads())
        return plain(model, batch)

    before = torch.get_num_threads()
    try:
        model = models.load_pretrained(str(tiny_teacher), "classification", 2)
        result = train(model, counting, t, tr, va, d.val, cfg, 0, threads=threads)
    finally:
        torch.set_num_threads(before)
    assert steps == [1] * per_epoch + [2] * per_epoch
    assert [h["threads"] for h in result.history] == [1, 2]


# ---------------------------------------------------------------- devices and precision
def test_the_device_setting_resolves_or_says_what_is_missing(monkeypatch):
    from compressbench.errors import ConfigError
    from compressbench.training import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="training.device: cuda, but this torch .* sees no "
                                          "CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device: mps, but this torch sees no Apple GPU"):
        resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"  # auto picks CUDA where present
    with pytest.raises(ValueError, match="device: 'tpu' is not one of auto, cpu, cuda, mps"):
        Training(device="tpu")
    with pytest.raises(ValueError, match="precision: 'fp8' is not one of fp32, bf16, fp16"):
        Training(precision="fp8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_under_autocast_and_keeps_fp32_weights(tiny_teacher, data_dir,
                                                                      precision):
    """On the CPU (autocast works there too): the loss is finite, the weights stay fp32 and
    on the CPU, the history says how it trained, and the arithmetic did change."""
    ref = learn(tiny_teacher, data_dir, seed=3, epochs=2.0, device="cpu")[0]
    model, result, _, _, _ = learn(tiny_teacher, data_dir, seed=3, epochs=2.0, device="cpu",
                                   precision=precision)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu"
               for p in model.parameters())
    assert result.as_dict()["precision"] == precision and result.device == "cpu"
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    assert not torch.equal(model.classifier.weight, ref.classifier.weight)
    assert torch.allclose(model.classifier.weight, ref.classifier.weight, atol=0.1)


def test_the_cache_key_ignores_the_device_but_not_the_precision():
    from compressbench.plan import key_settings

    base = key_settings(Training())
    assert base == key_settings(Training(device="cuda"))
    assert "precision" not in base  # the keys of models trained before it existed
    assert key_settings(Training(precision="bf16")) != base


def test_teacher_outputs_are_computed_on_the_models_device(tiny_teacher):
    """``logits_for`` and ``predict`` run where the model is and return CPU values."""
    from compressbench.training import device_of, logits_for

    model = models.load_pretrained(str(tiny_teacher), "classification", 2)
    feats = [{"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0]}]
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["input_ids"].device),
                                    with_kwargs=True)
    out = logits_for(model, feats)
    assert seen == [device_of(model)] and out[0].device.type == "cpu"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (none here; run on a GPU machine)")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda(tiny_teacher, data_dir, precision):
    cpu_model = learn(tiny_teacher, data_dir, seed=3, epochs=2.0)[0]
    model, result, _, d, tok = learn(tiny_teacher, data_dir, seed=3, epochs=2.0,
                                     device="cuda", precision=precision)
    assert result.device.startswith("cuda") and result.precision == precision
    assert all(p.device.type == "cpu" for p in model.parameters())  # back for saving
    assert torch.allclose(model.classifier.weight, cpu_model.classifier.weight, atol=0.1)
    dev = D.encode(task("sst2"), tok, d.evals["dev"], 32)
    assert predict(model.cuda(), task("sst2"), dev) == predict(model.cpu(), task("sst2"), dev)


def test_a_half_precision_checkpoint_is_widened_to_fp32(tmp_path, tiny_teacher):
    """transformers 5 loads a checkpoint in its stored dtype; training needs fp32 weights."""
    half = models.load_pretrained(str(tiny_teacher), "classification", 2).half()
    half.save_pretrained(tmp_path / "fp16")
    models.load_tokenizer(str(tiny_teacher)).save_pretrained(tmp_path / "fp16")
    model = models.load_pretrained(str(tmp_path / "fp16"), "classification", 2)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
