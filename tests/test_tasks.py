"""Task loaders (GLUE TSV, CoNLL columns, user files, Hub fallback) and their errors."""
from __future__ import annotations

import json

import pytest

from compressbench.errors import DataError
from compressbench.plugins import get_plugin_manager
from compressbench.tasks import CONLL_TAGS, builtin_tasks, file_task
from tests.conftest import SHARED_DATA, write


@pytest.fixture()
def tasks():
    return {t.name: t for t in builtin_tasks()}


def test_all_glue_tasks_and_conll_registered():
    reg = get_plugin_manager().tasks
    assert set(reg) >= {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli",
                        "conll2003"}
    assert reg.owners["sst2"] == "tasks"  # through the entry point, like any plugin


@pytest.mark.parametrize("name, first_label, text_b", [
    ("cola", 0, False), ("sst2", 0, False), ("mrpc", 0, True), ("qqp", 0, True),
    ("qnli", 0, True), ("rte", 0, True), ("wnli", 0, True), ("mnli", 0, True)])
def test_glue_classification_loaders(tasks, data_dir, name, first_label, text_b):
    task = tasks[name]
    train = task.load("train", data_dir)
    assert train[0].label == first_label
    assert isinstance(train[0].text_a, str) and train[0].text_a
    assert (train[0].text_b is not None) == text_b
    assert {ex.label for ex in train} <= set(range(len(task.labels)))
    for split in task.eval_splits:
        assert task.load(split, data_dir)


def test_label_names_map_to_hub_order(tasks, data_dir):
    mnli = tasks["mnli"].load("train", data_dir)
    assert [ex.label for ex in mnli[:3]] == [0, 1, 2]  # entailment, neutral, contradiction
    rte = tasks["rte"].load("train", data_dir)
    assert [ex.label for ex in rte[:2]] == [0, 1]  # entailment, not_entailment
    assert tasks["mnli"].eval_splits == ("dev_matched", "dev_mismatched")
    assert tasks["mnli"].main_metric == "accuracy_dev_matched"


def test_stsb_is_regression(tasks, data_dir):
    ex = tasks["stsb"].load("train", data_dir)
    assert tasks["stsb"].kind.name == "regression" and tasks["stsb"].num_labels == 1
    assert ex[0].label == pytest.approx(0.5) and ex[1].label == pytest.approx(5.0)


def test_conll_reader(tasks, data_dir):
    sents = tasks["conll2003"].load("train", data_dir)
    assert len(sents) == 12
    s = sents[0]
    assert s.text_a[:3] == ["EU", "rejects", "German"]
    assert [CONLL_TAGS[t] for t in s.label[:3]] == ["B-ORG", "O", "B-MISC"]
    assert tasks["conll2003"].validation_split == "validation"
    assert tasks["conll2003"].eval_splits == ("test",)


def test_conll_bad_tag(tmp_path, tasks):
    write(tmp_path / "conll2003/train.txt", "EU NNP B-NP B-ORGANIZATION\n")
    with pytest.raises(DataError, match=r"train.txt:1: tag 'B-ORGANIZATION' is not one of"):
        tasks["conll2003"].load("train", tmp_path)


def test_malformed_and_bad_labels(tmp_path, tasks):
    write(tmp_path / "glue/RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"RTE/train.tsv:2, column 'label': label 'maybe' is "
                                         r"not one of entailment, not_entailment"):
        tasks["rte"].load("train", tmp_path)
    write(tmp_path / "glue/RTE/dev.tsv", "index\ts1\ts2\tlabel\n")
    with pytest.raises(DataError, match=r"no column 'sentence1'"):
        tasks["rte"].load("dev", tmp_path)
    with pytest.raises(DataError, match=r"no data folder for this task"):
        tasks["qqp"].load("train", tmp_path)


def test_bom_is_ignored(tmp_path, tasks):
    write(tmp_path / "glue/MRPC/train.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                            "1\t1\t2\ta\tb\n")
    assert tasks["mrpc"].load("train", tmp_path)[0].label == 1


@pytest.mark.parametrize("suffix", ["csv", "tsv", "json", "jsonl"])
def test_user_file_task(tmp_path, suffix):
    rows = [{"review": f"text {i}", "topic": f"t{i}", "stars": ["bad", "good"][i % 2]}
            for i in range(6)]
    for split in ("train", "dev"):
        path = tmp_path / f"{split}.{suffix}"
        if suffix == "json":
            path.write_text(json.dumps(rows))
        elif suffix == "jsonl":
            path.write_text("\n".join(json.dumps(r) for r in rows))
        else:
            sep = "," if suffix == "csv" else "\t"
            path.write_text("review,topic,stars\n".replace(",", sep) + "".join(
                sep.join(r.values()) + "\n" for r in rows))
    task = file_task("reviews", "classification",
                     {"train": tmp_path / f"train.{suffix}", "dev": tmp_path / f"dev.{suffix}"},
                     ["review", "topic"], "stars", None, None)
    assert task.labels == ("bad", "good")
    exs = task.load("train", None)
    assert (exs[1].text_a, exs[1].text_b, exs[1].label) == ("text 1", "t1", 1)
    assert task.metrics == ("accuracy", "macro_f1")


def test_user_file_task_errors(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,1\n")
    task = file_task("x", "classification", {"train": tmp_path / "train.csv",
                                              "dev": tmp_path / "dev.csv"},
                     ["txt"], "label", ["0", "1"], None)
    with pytest.raises(DataError, match=r"train.csv: no column 'txt'. Did you mean: text?"):
        task.load("train", None)
    with pytest.raises(DataError, match=r"dev.csv: data file not found"):
        task.load("dev", None)


def test_hub_fallback_maps_columns(monkeypatch, tasks):
    import datasets

    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        if name == "eriktks/conll2003":
            return datasets.Dataset.from_dict({"tokens": [["EU", "rejects"]],
                                               "ner_tags": [[3, 0]]})
        return datasets.Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [2]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ex = tasks["mnli"].load("dev_mismatched", None)
    assert (ex[0].text_a, ex[0].text_b, ex[0].label) == ("p", "h", 2)
    assert calls[-1] == ("nyu-mll/glue", "mnli", "validation_mismatched")
    ex = tasks["conll2003"].load("test", None)
    assert ex[0].text_a == ["EU", "rejects"] and ex[0].label == [3, 0]
    assert calls[-1] == ("eriktks/conll2003", None, "test")


def test_hub_failure_is_a_clear_error(monkeypatch, tasks):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"no data directory given .* Pass --data-dir"):
        tasks["sst2"].load("train", None)


@pytest.mark.skipif(not (SHARED_DATA / "glue").is_dir(), reason="shared data not present")
@pytest.mark.parametrize("name, train_n, dev_n", [
    ("cola", 8551, 1043), ("sst2", 67349, 872), ("mrpc", 3668, 408), ("stsb", 5749, 1500),
    ("rte", 2490, 277), ("wnli", 635, 71)])
def test_shared_glue_counts(tasks, name, train_n, dev_n):
    task = tasks[name]
    assert len(task.load("train", SHARED_DATA)) == train_n
    assert len(task.load("dev", SHARED_DATA)) == dev_n


@pytest.mark.skipif(not (SHARED_DATA / "conll2003").is_dir(), reason="shared data not present")
def test_shared_conll_counts(tasks):
    t = tasks["conll2003"]
    assert [len(t.load(s, SHARED_DATA)) for s in ("train", "validation", "test")] == \
        [14041, 3250, 3453]


def test_iob1_is_converted_to_iob2():
    from compressbench.tasks import iob1_to_iob2

    # IOB1: entities start with I-; B- only between two adjacent entities of one type
    iob1 = ["I-ORG", "O", "I-PER", "I-PER", "B-PER", "I-LOC", "I-MISC", "I-MISC"]
    assert iob1_to_iob2(iob1) == ["B-ORG", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "B-MISC",
                                  "I-MISC"]
    iob2 = ["B-ORG", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "B-MISC", "I-MISC"]
    assert iob1_to_iob2(iob2) == iob2  # IOB2 is left alone


def test_conll_iob1_file_reads_as_iob2(tmp_path, tasks):
    iob1 = ("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n"
            "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\nJohn NNP I-NP B-PER\n\n")
    write(tmp_path / "conll2003/eng.train", iob1)
    [s] = tasks["conll2003"].load("train", tmp_path)
    assert [CONLL_TAGS[t] for t in s.label] == ["B-ORG", "O", "B-MISC", "B-PER", "I-PER",
                                                "B-PER"]


@pytest.mark.skipif(not (SHARED_DATA / "conll2003/original_iob1/eng.train").is_file(),
                    reason=f"CoNLL-2003 in both layouts not found under {SHARED_DATA}")
def test_both_layouts_of_conll2003_give_identical_examples():
    from compressbench.tasks import read_conll

    folder = SHARED_DATA / "conll2003"
    for iob2, iob1 in (("train.txt", "eng.train"), ("valid.txt", "eng.testa"),
                       ("test.txt", "eng.testb")):
        a, b = read_conll(folder / iob2), read_conll(folder / "original_iob1" / iob1)
        assert a == b, f"{iob2} and {iob1} differ"
    b_tags = sum(t in (1, 3, 5, 7) for ex in read_conll(folder / "original_iob1/eng.train")
                 for t in ex.label)
    assert b_tags == 23499  # B- tags, as train.txt has (IOB1 read raw gave 72)
