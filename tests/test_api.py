"""The plugin authors' API: one module, used alone by the built-ins; feature capture on BERT
and DistilBERT; the MiniLM losses; a MiniLM-style method written with nothing else."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import transformers

from compressbench import api

ROOT = Path(__file__).resolve().parents[1]


def internal_imports(paths, allowed_prefix: str) -> list[str]:
    """Imports of compressbench modules other than ``compressbench.api`` (and of
    ``allowed_prefix``, the package's own) in ``paths``."""
    offenders = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith(allowed_prefix):
                    continue
                if name.startswith("compressbench_plugins") or (
                        name.startswith("compressbench") and name not in ("compressbench.api",)
                        and not (name == "compressbench" and isinstance(node, ast.ImportFrom)
                                 and [a.name for a in node.names] == ["api"])):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return offenders


def test_the_built_in_methods_import_nothing_but_the_api():
    """Whatever a built-in method takes from the core, a third party can take too."""
    assert internal_imports(sorted((ROOT / "plugins").glob("*.py")), "\0") == []


def test_the_example_packages_and_their_tests_use_only_the_api():
    """The out-of-tree examples are what plugin authors copy: code and tests alike import
    nothing from compressbench but ``compressbench.api`` (their own package aside)."""
    paths = sorted(p for p in (ROOT / "examples").rglob("*.py") if ".egg-info" not in str(p))
    assert len(paths) >= 10
    own = ("compressbench_drop_layers", "compressbench_multilabel", "compressbench_choice",
           "compressbench_isolated", "compressbench_autocast")
    offenders = [o for o in internal_imports(paths, "\0") if not o.split(": ")[-1].startswith(own)]
    assert offenders == []


def test_every_api_name_resolves():
    for name in api.__all__:
        if name in ("onnxrt", "openvino"):
            continue  # need the onnx / openvino extras: checked where those are installed
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018


def models_to_check():
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, attn_implementation="eager")).eval()
    distil = transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        attn_implementation="eager")).eval()
    return [bert, distil]


@pytest.mark.parametrize("index", [0, 1], ids=["bert", "distilbert"])
def test_capture_matches_what_the_model_returns(index):
    model = models_to_check()[index]
    ids = torch.tensor([[101, 7, 8, 9, 102], [101, 5, 102, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with api.capture(model, "hidden", "qkv") as c, torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                    output_attentions=True)
    assert len(c.hidden) == 3 and len(c.attention_probs) == 2
    for mine, theirs in zip(c.hidden, out.hidden_states):
        assert torch.allclose(mine, theirs, atol=1e-6)
    for mine, theirs in zip(c.attention_probs, out.attentions):  # (B, h, T, T)
        assert torch.allclose(mine, theirs, atol=1e-6)
    assert c.queries[0].shape == c.values[1].shape == (2, 4, 5, 8)
    scores = c.attention_scores[0]
    assert torch.allclose(scores, c.queries[0] @ c.keys[0].transpose(-1, -2) / 8 ** 0.5)
    assert not model._forward_hooks and not model._forward_pre_hooks  # closed: all removed


def test_capture_refuses_what_it_cannot_find():
    with pytest.raises(ValueError, match="give one or more of hidden, qkv"):
        api.capture(models_to_check()[0], "attention")
    with pytest.raises(api.ConfigError, match="BERT and DistilBERT models only"):
        api.capture(torch.nn.Linear(2, 2), "qkv")


def test_attention_kl_and_relation_by_hand():
    mask = torch.tensor([[1, 1, 0]])
    p = torch.tensor([[[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]]])  # (1, 1, 3, 3)
    assert api.attention_kl(p, p, mask).item() == pytest.approx(0.0, abs=1e-6)
    q = torch.tensor([[[[0.25, 0.75, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])
    # row 1: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75); row 2: 0; the padded query row 3 ignored
    expected = (0.5 * torch.log(torch.tensor(2.0)) + 0.5 * torch.log(torch.tensor(2 / 3))) / 2
    assert api.attention_kl(q, p, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    v = torch.randn(1, 1, 3, 4)
    r = api.relation(v, mask)
    assert torch.allclose(r.sum(-1), torch.ones(1, 1, 3)) and (r[..., 2] == 0).all()


MINILM = '''
"""MiniLM-style self-attention distillation (Wang et al. 2020): the student's last layer
matches the teacher's last-layer attention distributions and value relations."""
import torch

from compressbench import api


class MiniLM(api.Method):
    name = "minilm-test"
    description = "last-layer attention and value-relation transfer"

    def build(self, ctx, params):
        teacher = ctx.teacher()
        student = ctx.make_student(api.half_student(None, teacher.config.num_hidden_layers))
        t_cap, s_cap = api.capture(teacher, "qkv"), api.capture(student, "qkv")

        def loss_fn(model, batch):
            mask = batch["attention_mask"]
            with torch.no_grad():
                teacher(**api.forward_kwargs(teacher, batch))
            logits = api.logits_of(model(**api.forward_kwargs(model, batch)))
            at = api.attention_kl(s_cap.attention_probs[-1], t_cap.attention_probs[-1], mask)
            vr = api.attention_kl(api.relation(s_cap.values[-1], mask),
                                  api.relation(t_cap.values[-1], mask), mask)
            task = api.task_loss(ctx.task.kind, logits, batch["labels"])
            return at + vr + task, {"at": at.item(), "vr": vr.item(), "task": task.item()}

        try:
            ctx.train(student, loss_fn, description="minilm")
        finally:
            t_cap.close()
            s_cap.close()
        return student


@api.hookimpl
def register_methods(register):
    register(MiniLM())
'''


def test_a_minilm_method_written_with_the_api_alone_runs_and_shows_its_terms(
        tmp_path, tiny_teacher, data_dir):
    from compressbench.plugins import get_plugin_manager
    from compressbench.runner import run_suite
    from compressbench.suite import load_suite
    from tests.conftest import suite_file
    from tests.test_runner import suite_text

    plugin = tmp_path / "minilm.py"
    plugin.write_text(MINILM)
    text = suite_text(tiny_teacher, "  - {name: minilm-test, label: minilm}\n").replace(
        "version: 1\n", "version: 1\nplugins: [minilm.py]\n")
    records = run_suite(load_suite(suite_file(tmp_path, text)),
                        get_plugin_manager([plugin]), data_dir, tmp_path / "run",
                        tmp_path / "cache")
    mine = next(r for r in records if r["label"] == "minilm")
    assert mine["status"] == "ok", mine.get("error")
    epoch = mine["training"][0]["runs"][0]["history"][0]
    assert {"train_at", "train_vr", "train_task"} <= set(epoch)
    assert epoch["train_at"] >= 0 and epoch["train_vr"] >= 0
