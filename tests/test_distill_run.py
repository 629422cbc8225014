"""Every distillation method through the real runner, on a tiny BERT teacher and tiny data, for
each kind of task: single sentence, sentence pair, regression and token classification."""
from __future__ import annotations

import pytest

from compressbench import results
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import make_data_dir, suite_file, write

METHODS = """
  - name: finetune
    label: finetune-2L
    student: {layers: 2}
  - name: kd
    student: {layers: 2}
  - name: distilbert
  - name: pkd-skip
  - name: pkd-last
  - name: tinybert
    intermediate_epochs: 1
    student: {layers: 2, init: random, hidden_size: 16, num_attention_heads: 2,
              intermediate_size: 32}
  - name: bilstm
    n_aug: 2
    lexicon: LEXICON
    hidden_size: 8
    mlp_size: 8
"""


@pytest.fixture(scope="module")
def distill_run(tiny_teacher4, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    data = make_data_dir(tmp / "data")
    lexicon = write(tmp / "lexicon.txt", "film NN\nscript NN\nplot NN\nfunny JJ\ndull JJ\n")
    text = f"""
version: 1
teacher: {{model: {tiny_teacher4}, training: {{epochs: 2}}}}
tasks: [sst2, mrpc, stsb, conll2003]
methods: {METHODS.replace("LEXICON", str(lexicon))}
training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_val_samples: 8}}
measure: {{enabled: false}}
"""
    suite = load_suite(suite_file(tmp, text))
    records = run_suite(suite, get_plugin_manager(), data_dir=data, run_dir=tmp / "run",
                        cache_dir=tmp / "cache")
    return tmp, records


def test_every_method_runs_on_every_kind_of_task(distill_run):
    _, records = distill_run
    failed = [(r["job_id"], r.get("error")) for r in records if r["status"] != "ok"]
    assert not failed
    labels = {r["label"] for r in records}
    assert labels == {"teacher", "finetune-2L", "kd", "distilbert", "pkd-skip", "pkd-last",
                      "tinybert", "bilstm"}
    assert {r["task"] for r in records} == {"sst2", "mrpc", "stsb", "conll2003"}


def run(tmp, text, data, pm=None):
    suite = load_suite(suite_file(tmp, text))
    return run_suite(suite, pm or get_plugin_manager(), data_dir=data, run_dir=tmp / "run",
                     cache_dir=tmp / "cache")


def test_grid_is_chosen_on_validation_for_each_seed(tiny_teacher, tmp_path):
    data = make_data_dir(tmp_path / "data")
    records = run(tmp_path, f"""
version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods:
  - name: kd
    student: {{layers: 1}}
    grid: {{temperature: [1, 4], learning_rate: [1.0e-4, 3.0e-3]}}
seeds: [1, 2]
training: {{epochs: 1, batch_size: 16, max_seq_length: 16, max_val_samples: 16}}
measure: {{enabled: false}}
""", data)
    kd_records = [r for r in records if r["label"] == "kd"]
    assert [r["seed"] for r in kd_records] == [1, 2] and all(r["status"] == "ok"
                                                             for r in kd_records)
    for r in kd_records:
        grid = r["grid"]
        assert [g["setting"] for g in grid] == [
            {"temperature": 1, "learning_rate": 1e-4}, {"temperature": 1, "learning_rate": 3e-3},
            {"temperature": 4, "learning_rate": 1e-4}, {"temperature": 4, "learning_rate": 3e-3}]
        chosen = [g for g in grid if g.get("chosen")]
        assert len(chosen) == 1
        assert chosen[0]["val_score"] == max(g["val_score"] for g in grid)
        assert r["setting"] == chosen[0]["setting"]
        step = r["steps"][0]
        assert step["params"]["temperature"] == r["setting"]["temperature"]
        assert step["training"]["learning_rate"] == r["setting"]["learning_rate"]
        assert r["training"][0]["params"]["temperature"] == r["setting"]["temperature"]


def test_grid_key_errors_name_the_key(tiny_teacher, tmp_path):
    from compressbench.errors import ConfigError
    from compressbench.suite import check
    base = f"version: 1\nteacher: {{model: {tiny_teacher}}}\ntasks: [sst2]\nmethods:\n"
    cases = {"  - {name: kd, grid: {temprature: [1, 2]}}": "Did you mean: temperature",
             "  - {name: kd, grid: {max_train_samples: [10, 20]}}": "suite-wide",
             "  - {name: kd, grid: {alpha: [0.5, 2.0]}}": "alpha",
             "  - {name: kd, grid: {alpha: 0.5}}": "non-empty list",
             "  - {name: kd, alpha: 0.5, grid: {alpha: [0.1]}}": "outside the grid"}
    for entry, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            check(load_suite(suite_file(tmp_path, base + entry + "\n")), get_plugin_manager())


def save_tiny_mlm(folder, with_head=True):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    from compressbench.models import embedded_teacher_path
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    (BertForMaskedLM if with_head else BertModel)(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_teacher_path()).save_pretrained(folder)
    return folder


def test_distilbert_pretrain_mode_with_a_tiny_mlm_teacher(tiny_teacher, tmp_path):
    data = make_data_dir(tmp_path / "data")
    mlm = save_tiny_mlm(tmp_path / "mlm")
    corpus = write(tmp_path / "corpus.txt", "\n".join(
        f"the film number {i} was a gripping and moving story" for i in range(40)))
    records = run(tmp_path, f"""
version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods:
  - {{name: distilbert, mode: pretrain, mlm_teacher: {mlm}, corpus: {corpus},
     student: {{layers: 1}}}}
training: {{epochs: 1, batch_size: 16, max_seq_length: 16, max_val_samples: 16}}
measure: {{enabled: false}}
""", data)
    rec = next(r for r in records if r["label"] == "distilbert")
    assert rec["status"] == "ok", rec.get("error")
    pretrain, finetune = rec["training"][0]["runs"]
    assert pretrain["steps"] == 3 and "val_score" not in pretrain["history"][0]  # 40 lines / 16
    assert finetune["history"][0]["val_score"] is not None


def test_pretrain_mode_refuses_a_teacher_without_mlm_head(tmp_path):
    from compressbench.errors import ConfigError
    folder = save_tiny_mlm(tmp_path / "no-head", with_head=False)
    with pytest.raises(ConfigError, match="no trained MLM head"):
        distilbert_plugin().load_mlm_teacher(str(folder))


def distilbert_plugin():
    from compressbench_plugins import distilbert
    return distilbert


def test_methods_with_a_distilbert_teacher(tmp_path):
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from compressbench.models import embedded_teacher_path
    torch.manual_seed(0)
    teacher = tmp_path / "tiny-distilbert"
    DistilBertModel(DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2,
                                     hidden_dim=64)).save_pretrained(teacher)
    AutoTokenizer.from_pretrained(embedded_teacher_path()).save_pretrained(teacher)
    data = make_data_dir(tmp_path / "data")
    records = run(tmp_path, f"""
version: 1
teacher: {{model: {teacher}, training: {{epochs: 1}}}}
tasks: [mrpc]
methods:
  - {{name: kd, student: {{layers: 1}}}}
  - distilbert
  - pkd-skip
  - {{name: tinybert, intermediate_epochs: 1,
     student: {{layers: 1, init: random, hidden_size: 16, num_attention_heads: 2,
               intermediate_size: 32}}}}
  - {{name: bilstm, n_aug: 1, p_pos: 0, hidden_size: 8, mlp_size: 8}}
training: {{epochs: 1, batch_size: 16, max_seq_length: 24, max_val_samples: 8}}
measure: {{enabled: false}}
""", data)
    assert [(r["label"], r["status"], r.get("error")) for r in records] == [
        (label, "ok", None) for label in
        ("teacher", "kd", "distilbert", "pkd-skip", "tinybert", "bilstm")]


LOGIT_MSE = '''
"""Logit matching (Ba & Caruana 2014): a distillation loss written outside compressbench."""
from dataclasses import dataclass

from compressbench import Method, StudentSpec, hookimpl
from compressbench.models import forward_kwargs


@dataclass(frozen=True)
class Params:
    layers: int = 1


class LogitMSE(Method):
    name = "logit-mse"
    Params = Params

    def build(self, ctx, params):
        student = ctx.make_student(StudentSpec(layers=params.layers))

        def loss(model, batch):
            logits = model(**forward_kwargs(model, batch)).logits  # (B, C)
            return ((logits - batch["teacher_logits"]) ** 2).mean()

        ctx.train(student, loss, feats=ctx.with_teacher_logits("train"))
        return student


@hookimpl
def register_methods(register):
    register(LogitMSE())
'''


def test_a_distillation_loss_from_a_single_file_runs_in_a_suite(tiny_teacher, tmp_path,
                                                               monkeypatch):
    from compressbench.cli import main
    data = make_data_dir(tmp_path / "data")
    write(tmp_path / "logit_mse.py", LOGIT_MSE)
    suite = suite_file(tmp_path, f"""
version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
plugins: [logit_mse.py]
methods:
  - {{name: logit-mse, layers: 1}}
  - {{name: kd, student: {{layers: 1}}}}
training: {{epochs: 1, batch_size: 16, max_seq_length: 16, max_val_samples: 16}}
measure: {{enabled: false}}
""")
    monkeypatch.setenv("COMPRESSBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["run", str(suite), "--data-dir", str(data), "--output",
                 str(tmp_path / "run")]) == 0
    records = results.read(tmp_path / "run")
    assert [(r["label"], r["status"]) for r in records] == [
        ("teacher", "ok"), ("logit-mse", "ok"), ("kd", "ok")]
    events = list((tmp_path / "cache" / "teacher-outputs").rglob("*.pt"))
    assert len(events) == 1  # both methods read the same cached teacher logits


def test_report_shows_the_chosen_setting_and_on_demand_the_grid(tmp_path, capsys):
    import json

    from compressbench.cli import main
    from tests.test_report import SAVED as SMOKE
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = (SMOKE / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for seed, chosen in ((42, 1), (43, 0)):
        rec = json.loads(json.dumps(next(r for r in records if r["label"] != "teacher")))
        grid = [{"setting": {"temperature": t}, "val_score": v}
                for t, v in ((1, 0.5), (4, 0.75 if chosen else 0.25))]
        grid[chosen]["chosen"] = True
        rec.update(label="kd", seed=seed, job_id=f"{rec['task']}/kd/seed{seed}", grid=grid,
                   setting=grid[chosen]["setting"])
        records.append(rec)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(run_dir), "--format", "md"]) == 0
    md = (run_dir / "report.md").read_text()
    assert "chosen setting" in md and "seed 42: temperature=4; seed 43: temperature=1" in md
    assert "grid on validation" not in md
    assert main(["report", str(run_dir), "--format", "md,html", "--grid"]) == 0
    md = (run_dir / "report.md").read_text()
    assert "| temperature=4 | 0.7500 ✓ | 0.2500 |" in md
    assert "| temperature=1 | 0.5000 | 0.5000 ✓ |" in md
    assert "grid on validation" in (run_dir / "report.html").read_text()


def test_method_training_defaults_yield_to_the_suite_entry(tiny_teacher, tmp_path):
    from compressbench.runner import Job, Runner
    suite = load_suite(suite_file(tmp_path, f"""
version: 1
teacher: {{model: {tiny_teacher}}}
tasks: [sst2]
methods:
  - bilstm
  - {{name: bilstm, label: bilstm-slow, training: {{learning_rate: 1.0e-4}}}}
  - {{name: kd, student: {{layers: 1}}}}
training: {{learning_rate: 5.0e-5}}
"""))
    from compressbench.plan import plan_steps

    runner = Runner(suite, get_plugin_manager(), cache_dir=tmp_path / "cache")
    rates = []
    for entry in suite.methods:
        job = Job("sst2", entry.label, 42, entry.steps)
        rates.append(plan_steps(runner.suite, runner.pm, job.seed, job.steps,
                                "start")[0].training.learning_rate)
    assert rates == [1e-3, 1e-4, 5e-5]  # method default, entry override, suite


def test_tinybert_from_a_general_checkpoint(tiny_teacher, tmp_path):
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    general = tmp_path / "general-tinybert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=128)).save_pretrained(general)
    data = make_data_dir(tmp_path / "data")
    records = run(tmp_path, f"""
version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods:
  - {{name: tinybert, intermediate_epochs: 1, student: {{init: {general}}}}}
training: {{epochs: 1, batch_size: 16, max_seq_length: 16, max_val_samples: 16}}
measure: {{enabled: false}}
""", data)
    rec = records[-1]
    assert rec["status"] == "ok", rec.get("error")
    assert len(rec["training"][0]["runs"]) == 2  # intermediate stage, then prediction stage
    from compressbench.models import load_model
    student = load_model(results.model_path(tmp_path / "run", rec))
    start = BertModel.from_pretrained(general)
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 1
    # the student started from the checkpoint: a few AdamW steps at lr 5e-5 move a weight by
    # well under 1e-3, while a fresh random init would differ by about 0.02 on average
    moved = (student.bert.embeddings.word_embeddings.weight
             - start.embeddings.word_embeddings.weight).abs().mean()
    assert moved < 1e-3
