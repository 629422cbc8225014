"""Shared fixtures: a tiny BERT teacher built in-process, and small data files written in the
original GLUE / CoNLL layouts. Nothing here downloads anything."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPRESSBENCH_DATA_DIR", REPO.parent / "shared" / "data"))

POS = ["a gripping , funny and moving film", "wonderful acting and a clever script",
       "the best film of the year", "warm , witty and beautifully shot",
       "an absolute delight from start to finish", "smart and touching", "i loved it"]
NEG = ["a dull , lifeless mess", "boring and far too long", "the worst script in years",
       "flat characters and a silly plot", "tedious from start to finish", "awful acting",
       "i hated it"]


def save_tiny_bert(folder: Path, layers: int) -> Path:
    """A hidden-32 BERT with the bert-base-uncased vocabulary, saved like a Hub model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from compressbench.models import embedded_teacher_path

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_teacher_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """2 layers: the default teacher of the unit tests."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), 2)


@pytest.fixture(scope="session")
def tiny_teacher4(tmp_path_factory) -> Path:
    """4 layers: for student layer mappings and layer dropping."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert4"), 4)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sst2_rows(n: int) -> str:
    rows = ["sentence\tlabel"]
    for i in range(n):
        rows.append(f"{POS[i % len(POS)]}\t1" if i % 2 else f"{NEG[i % len(NEG)]}\t0")
    return "\n".join(rows) + "\n"


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    """Small files for every GLUE task and CoNLL-2003, in their original layouts."""
    return make_data_dir(tmp_path / "data")


def make_data_dir(root: Path) -> Path:
    g = root / "glue"
    write(g / "SST-2/train.tsv", sst2_rows(80))
    write(g / "SST-2/dev.tsv", sst2_rows(20))
    cola = "".join(f"gj04\t{i % 2}\t{'' if i % 2 else '*'}\t{POS[i % 7] if i % 2 else NEG[i % 7]}\n"
                   for i in range(30))
    write(g / "CoLA/train.tsv", cola)
    write(g / "CoLA/dev.tsv", cola)
    mrpc = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(
        f"{i % 2}\t{i}\t{i + 1}\t{POS[i % 7]}\t{POS[i % 7] if i % 2 else NEG[i % 7]}\n"
        for i in range(30))
    write(g / "MRPC/train.tsv", mrpc)
    write(g / "MRPC/dev.tsv", mrpc)
    stsb = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    stsb += "".join(f"{i}\tmain-news\tf\t2012\t{i}\tnone\tnone\t{POS[i % 7]}\t"
                    f"{POS[i % 7] if i % 2 else NEG[i % 7]}\t{5.0 if i % 2 else 0.5 + i % 3}\n"
                    for i in range(30))
    write(g / "STS-B/train.tsv", stsb)
    write(g / "STS-B/dev.tsv", stsb)
    qqp = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n" + "".join(
        f"{i}\t{2 * i}\t{2 * i + 1}\thow do i cook rice {i}?\thow to cook rice {i}?\t{i % 2}\n"
        for i in range(20))
    write(g / "QQP/train.tsv", qqp)
    write(g / "QQP/dev.tsv", qqp)
    mnli_head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
                 "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
                 "sentence2\tlabel1\tgold_label\n")
    labels = ["entailment", "neutral", "contradiction"]
    mnli = mnli_head + "".join(f"{i}\t{i}\t{i}e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\t"
                               f"the cat sat {i}\tthe cat is sitting\t{labels[i % 3]}\t"
                               f"{labels[i % 3]}\n" for i in range(24))
    write(g / "MNLI/train.tsv", mnli)
    dev_head = mnli_head.replace("label1\t", "label1\tlabel2\tlabel3\tlabel4\tlabel5\t")
    for name in ("dev_matched", "dev_mismatched"):
        write(g / f"MNLI/{name}.tsv", dev_head + "".join(
            f"{i}\t{i}\t{i}e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tthe dog ran {i}\t"
            f"a dog moved\t{labels[i % 3]}\t{labels[i % 3]}\t{labels[i % 3]}\t{labels[i % 3]}"
            f"\t{labels[i % 3]}\t{labels[i % 3]}\n" for i in range(9)))
    for folder, (a, b) in {"QNLI": ("question", "sentence"), "RTE": ("sentence1", "sentence2"),
                           "WNLI": ("sentence1", "sentence2")}.items():
        if folder == "WNLI":
            lab = ["0", "1"]
        else:
            lab = ["entailment", "not_entailment"]
        body = f"index\t{a}\t{b}\tlabel\n" + "".join(
            f"{i}\tfirst text {i}\tsecond text {i}\t{lab[i % 2]}\n" for i in range(20))
        write(g / f"{folder}/train.tsv", body)
        write(g / f"{folder}/dev.tsv", body)
    conll = "-DOCSTART- -X- -X- O\n\n" + "".join(
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n"
        "by IN B-PP O\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n. . O O\n\n"
        for _ in range(12))
    for name in ("train.txt", "valid.txt", "test.txt"):
        write(root / "conll2003" / name, conll)
    return root


def suite_file(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    return write(tmp_path / name, text)


def wait_for(ready, what: str, proc=None, safety_s: float = 600) -> None:
    """Poll ``ready()`` until it is true: tests wait for the event they test (a pid file, a
    process start), not for a guess at how fast this machine is. ``proc``: a process that must
    still be running meanwhile (fail at once if it exits); ``safety_s``: only a net for a hang,
    generous enough for a loaded 2-core machine."""
    import time

    deadline = time.monotonic() + safety_s
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {safety_s:.0f} s")
        time.sleep(0.05)


#: the longest test files, started first so the two pytest-xdist processes (`make test`) finish
#: together instead of one waiting for the last long file
LONG_FIRST = ("test_e2e.py", "test_executors.py", "test_isolated.py", "test_faults.py")


def pytest_collection_modifyitems(config, items):
    """Run the longest files first (a stable sort: the order is otherwise unchanged)."""
    items.sort(key=lambda item: 0 if item.path.name in LONG_FIRST else 1)
