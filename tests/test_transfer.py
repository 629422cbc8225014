"""Transfer sets (issue 24): the teacher labels examples beyond the labelled ones; the scored
data never enters; the setting is part of the cache key of the methods that use it only; bad
files fail at validate with the file and line; a plugin method and a plugin augmenter get it
through the public API."""
from __future__ import annotations

import json

import pytest
import torch

from compressbench.errors import ConfigError
from compressbench.plugins import get_plugin_manager
from compressbench.suite import load_suite
from tests.conftest import suite_file, write

GOOD = ["a fine {} film", "the {} cast shines", "warm and {} throughout", "{} , clever and true"]
BAD = ["a dull {} mess", "the {} plot drags", "flat and {} throughout", "{} , tired and long"]
WORDS = ["bright", "quiet", "odd", "long", "short", "loud", "new", "old", "big", "small"]


def distinct_sst2(root, n_train: int = 120, planted: int = 3):
    """SST-2 files whose sentences are all different; the dev split repeats ``planted``
    training sentences (the leak check must drop them from a transfer set)."""
    rows = [(t.format(f"{WORDS[i % 10]}{i}"), i % 2) for i, t in
            enumerate((GOOD + BAD) * (n_train // 8 + 1))][:n_train]
    dev = [(f"dev sentence {i} {WORDS[i % 10]}", i % 2) for i in range(16)] + rows[-planted:]
    for name, items in (("train", rows), ("dev", dev)):
        write(root / "glue" / "SST-2" / f"{name}.tsv",
              "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in items))
    return root


def suite_with(tmp_path, teacher, methods: str, training: str = "") -> object:
    text = (f"version: 1\nname: tiny\nteacher: {{model: '{teacher}'}}\ntasks: [sst2]\n"
            f"methods:\n{methods}seeds: [1]\n"
            f"training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,"
            f" max_train_samples: 40, max_val_samples: 8{training}}}\n"
            f"measure: {{enabled: false}}\n")
    return load_suite(suite_file(tmp_path, text))


def test_gold_loss_leaves_out_rows_without_a_gold_label():
    from compressbench.losses import gold_loss
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])  # (B, C)
    labels = torch.tensor([0, 0, 1])
    everything = gold_loss("classification", logits, {"labels": labels})
    gold = gold_loss("classification", logits, {"labels": labels,
                                                "labelled": torch.tensor([True, True, False])})
    first_two = torch.nn.functional.cross_entropy(logits[:2], labels[:2])
    assert gold.item() == pytest.approx(first_two.item()) != pytest.approx(everything.item())
    none = gold_loss("classification", logits, {"labels": labels,
                                                "labelled": torch.tensor([False] * 3)})
    assert none.item() == 0.0


def test_the_setting_is_in_the_key_of_the_methods_that_use_it_only(tmp_path, tiny_teacher):
    from compressbench.plan import plan_steps
    methods = ("  - {name: finetune, label: small, student: {layers: 1}}\n"
               "  - {name: kd, student: {layers: 1}}\n"
               "  - {name: distilbert, label: labels, alpha_ce: 0, alpha_cos: 0,\n"
               "     student: {layers: 1}}\n")
    pm = get_plugin_manager()

    def keys(training: str) -> dict:
        suite = suite_with(tmp_path, tiny_teacher, methods, training)
        return {m.label: plan_steps(suite, pm, 1, m.steps, "start")[-1].key
                for m in suite.methods}

    texts = write(tmp_path / "texts.txt", "one text\nanother text\n")
    plain = keys("")
    unlabeled = keys(", transfer: {unlabeled: 100}")
    with_file = keys(", transfer: {file: texts.txt}")
    assert unlabeled["small"] == plain["small"] == with_file["small"]  # finetune: no teacher
    # a labels-only configuration of a method that uses transfer sets ignores a suite-wide one
    assert unlabeled["labels"] == plain["labels"] == with_file["labels"]
    assert len({plain["kd"], unlabeled["kd"], with_file["kd"]}) == 3
    texts.write_text("one text\nanother, changed text\n")  # the file's content, not its path
    assert keys(", transfer: {file: texts.txt}")["kd"] != with_file["kd"]


@pytest.mark.parametrize("entry,message", [
    ("{name: finetune, label: small, student: {layers: 1},",
     r"finetune does not train on a transfer set \(those that do: .*kd"),
    ("{name: distilbert, label: labels, alpha_ce: 0, alpha_cos: 0,",
     "with these parameters distilbert learns from the labels alone"),
])
def test_an_entry_that_cannot_use_a_transfer_set_may_not_set_one(tmp_path, tiny_teacher, entry,
                                                                  message):
    from compressbench.suite import check
    methods = f"  - {entry}\n     training: {{transfer: {{unlabeled: 10}}}}}}\n"
    suite = suite_with(tmp_path, tiny_teacher, methods)
    with pytest.raises(ConfigError, match=r"methods\[0\].training.transfer: " + message):
        check(suite, get_plugin_manager())


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    (b"\n\n", "empty"),
    (b"a sentence\ttoo many\n", r":1: 2 tab-separated text\(s\); this task reads 1"),
    (b"fine line\n\xff\xfe broken\n", ":2: not UTF-8"),
])
def test_a_bad_transfer_file_fails_validate_naming_file_and_line(tmp_path, tiny_teacher,
                                                                  content, message):
    from compressbench.preflight import preflight
    data = distinct_sst2(tmp_path / "data")
    if content is not None:
        (tmp_path / "texts.txt").write_bytes(content)
    suite = suite_with(tmp_path, tiny_teacher, "  - {name: kd, student: {layers: 1}}\n",
                       ", transfer: {file: texts.txt}")
    with pytest.raises(ConfigError, match=rf"methods\[0\].training.transfer.file: "
                                          rf".*texts.txt.*{message}"):
        preflight(suite, get_plugin_manager(), data, str(tiny_teacher))


def test_an_unknown_augmenter_or_option_fails_validate(tmp_path, tiny_teacher):
    from compressbench.preflight import preflight
    data = distinct_sst2(tmp_path / "data")
    kd = "  - {name: kd, student: {layers: 1}}\n"
    for spec, message in (("{rules: tnag}", "unknown augmenter 'tnag'. Did you mean: tang"),
                          ("{options: {p_mask: 0.1, p_pos: 0}, rules: tang, copies: 0}",
                           "copies: 0 must be at least 1"),
                          ("{options: {p_msk: 0.2}}", "unknown key 'p_msk'")):
        with pytest.raises(ConfigError, match=message):  # on reading the suite, or validate
            suite = suite_with(tmp_path, tiny_teacher, kd, f", transfer: {{augment: {spec}}}")
            preflight(suite, get_plugin_manager(), data, str(tiny_teacher))


PLUGIN = '''
import dataclasses

import compressbench
from compressbench import api


@dataclasses.dataclass(frozen=True)
class ShoutOptions:
    suffix: str = "!"


class Shout:
    """Upper-cases each example and appends a suffix: an augmenter from a plugin file."""
    name, description, Options = "shout", "upper case", ShoutOptions

    def check(self, options, data_dir, where):
        if not options.suffix:
            raise compressbench.ConfigError(f"{where}.suffix: empty")

    def augment(self, examples, kind, options, copies, seed, ctx):
        return [api.Example(e.text_a.upper() + options.suffix * (c + 1), e.text_b, None)
                for e in examples for c in range(copies)]


class Sees(api.Method):
    """A plugin method that trains on the transfer set through the public API."""
    name, uses_transfer = "sees-transfer", True

    def build(self, ctx, params):
        feats = ctx.transfer_set()
        flags = [bool(f["labelled"]) for f in feats]
        ctx.emit("seen", {"labelled": sum(flags), "unlabelled": len(flags) - sum(flags)})
        student = ctx.make_student(api.StudentSpec(layers=1))
        ctx.train(student, api.kd_loss(ctx.task.kind, 2.0, 0.5), feats=feats)
        return student


@compressbench.hookimpl
def register_methods(register):
    register(Sees())


@compressbench.hookimpl
def register_augmenters(register):
    register(Shout())
'''


def test_a_plugin_method_and_augmenter_use_the_transfer_set_through_the_api(tmp_path,
                                                                           tiny_teacher):
    from compressbench.runner import run_suite
    data = distinct_sst2(tmp_path / "data", n_train=120, planted=3)
    plugin = write(tmp_path / "mine.py", PLUGIN)
    methods = ("  - {name: sees-transfer, label: mine}\n"
               "  - {name: kd, student: {layers: 1}}\n"
               "  - {name: pkd-skip, student: {layers: 1}}\n"
               "  - {name: distilbert, student: {layers: 1}}\n"
               "  - {name: tinybert, intermediate_epochs: 1, student: {layers: 1}}\n"
               "  - {name: bilstm, n_aug: 1, p_pos: 0, hidden_size: 8, mlp_size: 8}\n")
    suite = suite_with(tmp_path, tiny_teacher, methods,
                       ", transfer: {unlabeled: 1000, augment: {rules: shout, copies: 2, "
                       "options: {suffix: '?'}}}")
    seen = []

    class Listen:
        @compressbench_hookimpl
        def job_event(self, job, event, data):
            if event in ("seen", "transfer_set"):
                seen.append((event, data))

    pm = get_plugin_manager([plugin])
    pm.register(Listen(), "listen")
    records = run_suite(suite, pm, data, tmp_path / "run", tmp_path / "cache")
    assert [r["status"] for r in records] == ["ok"] * 7, [r.get("error") for r in records]
    info = records[1]["training"][0]["transfer"]
    for r in records[2:]:  # every built-in distillation method trained on the same set
        assert r["training"][0]["transfer"]["sources"] == info["sources"], r["label"]
    # 120 train - 8 held out for validation - 40 labelled = 72 in the pool; 3 of them are
    # also dev sentences: dropped, never labelled by the teacher as transfer examples
    assert info["unlabeled_available"] == 72 and info["leaks_dropped"] == 3
    assert info["sources"] == {"unlabeled": 69, "augment:shout": 80}
    assert info["labelled"] == 40 and info["transfer"] == 149 and info["label_s"] >= 0
    assert ("seen", {"labelled": 40, "unlabelled": 149}) in seen
    # bilstm: the labelled examples, the transfer set, then its own copy of each labelled one
    # (a copy the rules left unchanged is dropped: at most one new copy per labelled example)
    totals = [d["total"] for e, d in seen if e == "transfer_set" and "original" in d]
    assert len(totals) == 1 and 40 + 149 < totals[0] <= 40 + 149 + 40
    # the teacher's logits for the transfer set are cached once per teacher and inputs
    cached = list((tmp_path / "cache" / "teacher-outputs").rglob("*.pt"))
    assert len(cached) == 3  # the labelled features and the transfer set, for all six, and
    # bilstm's own augmented copies
    assert json.dumps(info)  # JSON in the record
    from compressbench.report import summarise
    from compressbench.report.tables import table_notes
    note = next(n for n in table_notes(summarise(tmp_path / "run").tables[0])
                if n.startswith("Transfer sets:"))  # the report says who trained on what
    assert "`kd`, `pkd-skip`" in note and "40 labelled examples plus 149 the teacher" in note
    assert "3 dropped as validation or reported texts" in note


compressbench_hookimpl = __import__("compressbench").hookimpl


def test_tinybert_rules_replace_single_piece_words_by_embedding_neighbours(tiny_teacher):
    """Jiao et al. §3.3 with the teacher's embeddings: only single-WordPiece words change, into
    whole-word tokens among their K nearest; p = 0 makes no copy; a seed repeats a copy."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from compressbench.augment import TinyBert, TinyBertOptions
    from compressbench.models import load_pretrained
    from compressbench.tasks import Example

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    model = load_pretrained(str(tiny_teacher), "classification", 2)
    ctx = SimpleNamespace(tokenizer=tok, teacher=lambda: model)
    rules = TinyBert()
    ex = [Example("the film was good and unforgettable", None, 1)]
    copies = rules.augment(ex, "classification", TinyBertOptions(p=1.0, neighbours=3), 4, 0, ctx)
    assert copies and all(len(c.text_a.split()) == 6 for c in copies)
    for copy in copies:
        for old, new in zip(ex[0].text_a.split(), copy.text_a.split()):
            if len(tok.tokenize(old)) > 1:
                assert new == old  # "unforgettable" is several pieces: kept
            else:
                assert new != old and len(tok.tokenize(new)) == 1 and not new.startswith("##")
    assert rules.augment(ex, "classification", TinyBertOptions(p=0.0), 4, 0, ctx) == []
    again = rules.augment(ex, "classification", TinyBertOptions(p=1.0, neighbours=3), 4, 0, ctx)
    assert again == copies
