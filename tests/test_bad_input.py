"""Bad data, suites and settings that used to be accepted silently or ended in a traceback: each
is now one line naming the file, the line or row, the column or key, and the fix (issue 21,
items 9 to 11)."""
from __future__ import annotations

import re

import pytest

from compressbench.cli import main
from compressbench.errors import ConfigError, DataError
from compressbench.glue import GLUE
from compressbench.suite import load_suite
from compressbench.tasks import file_task, glue_loader, read_conll
from tests.conftest import make_data_dir, suite_file, write
from tests.test_runner import suite_text


def glue(tmp_path, folder: str, text: str | bytes, split="train"):
    """Load ``text`` as GLUE ``folder``'s ``split`` file."""
    name = next(n for n, s in GLUE.items() if s.folder == folder)
    path = tmp_path / "glue" / folder / f"{split}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return glue_loader(name, GLUE[name])(split, tmp_path), path


# ------------------------------------------------------------------------------ GLUE files

@pytest.mark.parametrize("text, where, what", [
    ("sentence\tlabel\ngood film\t01\n", ":2, column 'label'", "'01' is not one of negative, positive (or their ids 0, 1)"),
    ("sentence\tlabel\ngood film\t²\n", ":2, column 'label'", "'²' is not one of negative, positive"),
    ("sentence\tlabel\ngood film\t¹\n", ":2, column 'label'", "'¹' is not one of negative, positive"),
    ("sentence\tlabel\tlabel\ngood film\t1\t0\n", ":1", "column 'label' appears twice"),
    ("sentence\tlabel\n \t1\n", ":2", "column 'sentence' is empty"),
    ("sentence\tlabel\n\t1\n", ":2", "column 'sentence' is empty"),
    ("sentence\tlabel\n", "", "no examples (the file has only a header)"),
    ("", "", "file is empty"),
])
def test_glue_files_give_one_line_errors(tmp_path, text, where, what):
    with pytest.raises(DataError) as exc:
        glue(tmp_path, "SST-2", text)
    message = str(exc.value)
    assert "\n" not in message
    assert re.escape(what) and what in message
    assert f"SST-2/train.tsv{where}" in message


def test_glue_ids_are_read_where_the_files_store_ids(tmp_path):
    examples, _ = glue(tmp_path, "SST-2", "sentence\tlabel\nbad\t0\ngood\t1\n")
    assert [e.label for e in examples] == [0, 1]


def test_invalid_utf8_in_a_glue_file_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"SST-2/train.tsv:3: cannot be decoded as utf-8"):
        glue(tmp_path, "SST-2", b"sentence\tlabel\ngood\t1\nbad \xff film\t0\n")


def test_a_megabyte_sentence_is_read_not_a_traceback(tmp_path):
    long = "word " * 250_000  # 1.25 MB in one field, past the csv module's default limit
    examples, _ = glue(tmp_path, "SST-2", f"sentence\tlabel\n{long}\t1\nshort\t0\n")
    assert len(examples) == 2 and len(examples[0].text_a) > 1_000_000


# ------------------------------------------------------------------------------ CoNLL files

@pytest.mark.parametrize("text, what", [
    (b"EU NNP B-NP B-ORG\nbad\xfe NN I-NP O\n", "conll.txt:2: cannot be decoded as utf-8"),
    (b"", "conll.txt: no sentences"),
    (b"-DOCSTART- -X- -X- O\n\n", "conll.txt: no sentences"),
])
def test_conll_files_give_one_line_errors(tmp_path, text, what):
    path = tmp_path / "conll.txt"
    path.write_bytes(text)
    with pytest.raises(DataError, match=re.escape(what)):
        read_conll(path)


# ------------------------------------------------------------------------------ user files

def user_task(tmp_path, csv: str, labels=None, kind="classification"):
    path = write(tmp_path / "train.csv", csv)
    return file_task("mine", kind, {"train": path, "dev": path}, ["text"], "label", labels,
                     None)


def test_a_label_is_a_name_not_an_index(tmp_path):
    task = user_task(tmp_path, "text,label\ngood film,pos\nbad film,1\n", labels=["neg", "pos"])
    with pytest.raises(DataError, match=r"train.csv: row 2, column 'label': label '1' is not "
                                        r"one of neg, pos.*names, not positions"):
        task.load("train", None)


def test_a_label_typo_suggests_the_closest_label(tmp_path):
    task = user_task(tmp_path, "text,label\ngood film,pos\nbad film,nge\n",
                     labels=["neg", "pos"])
    with pytest.raises(DataError, match="Did you mean: neg"):
        task.load("train", None)


def test_a_class_seen_once_in_inferred_labels_is_warned_with_its_row(tmp_path, capsys):
    rows = "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    task = user_task(tmp_path, "text,label\n" + rows + "stray,pso\n")
    assert task.labels == ("neg", "pos", "pso")
    err = capsys.readouterr().err
    assert "row 21, column 'label'" in err and "'pso'" in err and "Did you mean: pos" in err


USER_TASK = ("version: 1\ntasks:\n  - {{name: mine, train: t.csv, dev: t.csv, "
             "text_columns: {cols}, label_column: {label}{extra}}}\n"
             "methods:\n  - {{name: finetune}}\n")


@pytest.mark.parametrize("cols, label, extra, what", [
    ("[text, text]", "label", "", "text_columns: 'text' is given twice"),
    ("[text]", "text", "", "label_column: 'text' is also a text column"),
    ("[a, b]", "b", "", "label_column: 'b' is also a text column"),
    ("[text]", "label", ", labels: [neg, pos, neg]", "labels: 'neg' is listed twice"),
])
def test_user_task_columns_and_labels_are_checked(tmp_path, cols, label, extra, what):
    path = suite_file(tmp_path, USER_TASK.format(cols=cols, label=label, extra=extra))
    with pytest.raises(ConfigError, match=re.escape(what)) as exc:
        load_suite(path)
    assert "tasks[0]" in str(exc.value) and str(path) in str(exc.value)


# ------------------------------------------------------------------------------ suites

@pytest.mark.parametrize("seeds, what", [
    ("[42, 42]", "seed 42 is listed twice"),
    ("[18446744073709551616]", "is not a seed from 0 to 4294967295"),
    ("[-1]", "is not a seed from 0 to 4294967295"),
])
def test_seeds_are_distinct_and_in_range(tmp_path, tiny_teacher, seeds, what):
    path = suite_file(tmp_path, suite_text(tiny_teacher, seeds=seeds))
    with pytest.raises(ConfigError, match=re.escape(what)):
        load_suite(path)


def test_entry_seeds_are_in_range_too(tmp_path, tiny_teacher):
    methods = "  - {name: finetune, label: small, seeds: [4294967296]}\n"
    with pytest.raises(ConfigError, match=r"methods\[0\].seeds: 4294967296 is not a seed"):
        load_suite(suite_file(tmp_path, suite_text(tiny_teacher, methods=methods)))


def test_a_suite_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"suite.yaml:2: not UTF-8"):
        load_suite(path)


# ------------------------------------------------------------------------------ validate

def validate(tmp_path, text, capsys) -> tuple[int, str]:
    data = make_data_dir(tmp_path / "data")
    path = suite_file(tmp_path, text)
    code = main(["validate", str(path), "--data-dir", str(data)])
    return code, capsys.readouterr()


@pytest.mark.parametrize("methods, what", [
    ("  - {name: finetune, student: {layers: 1, init: random, hidden_size: 7, "
     "num_attention_heads: 2}}\n", "hidden_size 7 is not divisible by num_attention_heads 2"),
    ("  - {name: finetune, student: {layers: 1, init: random, hidden_size: 31}}\n",
     "hidden_size 31 is not divisible by num_attention_heads 2"),
    ("  - {name: finetune, training: {device: cuda}}\n", "sees no CUDA GPU"),
])
def test_validate_refuses_what_run_would_fail_on(tmp_path, tiny_teacher, capsys, methods,
                                                 what):
    import torch

    if "cuda" in methods and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out = validate(tmp_path, suite_text(tiny_teacher, methods=methods), capsys)
    assert code == 2, out.out
    assert what in out.err and len(out.err.strip().splitlines()) == 1


def test_validate_warns_about_bf16_on_a_cpu_without_bf16(tmp_path, tiny_teacher, capsys,
                                                         monkeypatch):
    from compressbench import training

    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    text = suite_text(tiny_teacher).replace("max_seq_length: 32,",
                                            "max_seq_length: 32, precision: bf16,")
    code, out = validate(tmp_path, text, capsys)
    assert code == 0
    assert "training.precision: bf16" in out.err and "precision: fp32" in out.err
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    code, out = validate(tmp_path / "again", text, capsys)
    assert code == 0 and "bf16" not in out.err


@pytest.mark.parametrize("cpuinfo, machine, native", [
    ("flags\t\t: fpu sse avx avx2 fma\n", "x86_64", False),  # AMD EPYC, AVX2 only
    ("flags\t\t: fpu avx2 avx512f avx512_bf16\n", "x86_64", True),
    ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", "x86_64", True),  # Sapphire Rapids
    ("Features\t: fp asimd bf16 i8mm\n", "aarch64", True),
    ("Features\t: fp asimd\n", "aarch64", False),
    ("processor\t: 0\n", "x86_64", None),
])
def test_the_cpu_bf16_probe(cpuinfo, machine, native):
    from compressbench.training import cpu_has_native_bf16

    assert cpu_has_native_bf16(cpuinfo, machine) is native


def test_a_misspelt_label_in_a_user_file_is_named_with_the_label_it_resembles(tmp_path,
                                                                              capsys):
    """Labels inferred from the data: a stray spelling becomes a class of its own, so it is
    named with its rows and the frequent label it resembles; listed labels make it an error
    with the same suggestion."""
    rows = ["text,label"] + [f"good film {i},positive" for i in range(30)] + \
        [f"bad film {i},negative" for i in range(30)] + \
        ["fine film,Positive", "nice film,Positive", "great film,postive"]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    task = file_task("mine", "classification", {"train": path, "dev": path}, ["text"], "label",
                     None, None)
    err = capsys.readouterr().err
    assert set(task.labels) == {"positive", "negative", "Positive", "postive"}
    assert "the label 'postive' appears once" in err and "Did you mean: positive," in err
    assert "the label 'Positive' (2 rows: 61, 62) looks like a misspelling of 'positive'" in err
    listed = file_task("mine", "classification", {"train": path, "dev": path}, ["text"],
                       "label", ["negative", "positive"], None)
    with pytest.raises(DataError, match=r"row 61, column 'label': label 'Positive' is not one "
                                        r"of negative, positive\. Did you mean: positive\?"):
        listed.load("train", None)
