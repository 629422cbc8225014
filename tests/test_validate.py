"""`validate` checks everything `run` would find wrong before training, with one line naming
the file, the key and the fix; and bad data is an error, never a silent class or a NaN."""
from __future__ import annotations

import pytest

from compressbench.cli import main
from tests.conftest import suite_file, write

BASE = """version: 1
teacher: {{model: '{teacher}'}}
tasks: {tasks}
methods:
{methods}
training: {{{training}}}
measure: {{{measure}}}
"""
TRAINING = {"epochs": "1", "max_train_samples": "40", "max_val_samples": "8",
            "max_seq_length": "32"}


def merged(defaults: dict, overrides: str) -> str:
    """'k: v' pairs of ``defaults`` with those in ``overrides`` (', k: v' ...) replacing them."""
    out = dict(defaults)
    for pair in filter(None, (p.strip() for p in overrides.split(","))):
        key, value = pair.split(":", 1)
        out[key.strip()] = value.strip()
    return ", ".join(f"{k}: {v}" for k, v in out.items())


def suite(tmp_path, teacher, methods="  - {name: finetune, student: {layers: 1}}",
          tasks="[sst2]", training="", measure="", extra=""):
    return suite_file(tmp_path, BASE.format(
        teacher=teacher, tasks=tasks, methods=methods, training=merged(TRAINING, training),
        measure=merged({"threads": "1"}, measure)) + extra)


def validate(path, data_dir, capsys) -> tuple[int, str]:
    code = main(["validate", str(path), "--data-dir", str(data_dir)])
    out = capsys.readouterr()
    return code, out.err + out.out


def test_a_good_suite_validates_and_reads_its_data(tmp_path, tiny_teacher, data_dir, capsys):
    code, out = validate(suite(tmp_path, tiny_teacher), data_dir, capsys)
    assert code == 0 and "ok (1 tasks" in out and "sst2 40/8/20" in out


@pytest.mark.parametrize("kwargs, expected", [
    ({"training": ", max_train_samples: -5"}, "max_train_samples: -5 must be at least 1"),
    ({"extra": "seeds: [1]\nseeds: [2]\n"}, "key 'seeds' is given twice"),
    ({"training": ", epochs: .inf"}, "epochs: inf is not a finite number"),
    ({"training": ", learning_rate: .nan"}, "learning_rate: nan is not a finite number"),
    ({"measure": ", latency_samples: 0"}, "measure: latency_samples: 0 must be at least 1"),
    ({"measure": ", threads: 0"}, "measure: threads: 0 must be at least 1"),
    ({"training": ", max_seq_length: 4096"}, "more than the teacher's 128 position embeddings"),
    ({"methods": "  - {name: finetune, student: {layers: 7}}"},
     "methods[0].student.layers: 7 is more than the teacher's 2 layers"),
    ({"methods": "  - {name: kd, grid: {student: [{layers: 1}, {layers: 9}]}}"},
     "student.layers: 9 is more than the teacher's 2 layers"),
])
def test_what_run_would_trip_on_fails_validate(tmp_path, tiny_teacher, data_dir, capsys,
                                               kwargs, expected):
    path = suite(tmp_path, tiny_teacher, **kwargs)
    code, out = validate(path, data_dir, capsys)
    assert code == 2, out
    assert expected in out and "Traceback" not in out
    assert out.strip().count("\n") == 0  # one line


def test_bilstm_lexicon_precondition_is_checked_before_training(tmp_path, tiny_teacher,
                                                                capsys):
    data = tmp_path / "mydata"
    write(data / "train.csv", "text,y\n" + "".join(f"t {i},{i % 2}\n" for i in range(20)))
    task = ("[{name: mine, train: mydata/train.csv, dev: mydata/train.csv, "
            "text_columns: [text], label_column: y}]")
    path = suite(tmp_path, tiny_teacher, methods="  - {name: bilstm}", tasks=task)
    code, out = validate(path, data, capsys)
    assert code == 2 and "methods[0].lexicon: 'conll2003' (the default) needs" in out
    assert "p_pos: 0" in out
    ok = suite(tmp_path, tiny_teacher, methods="  - {name: bilstm, p_pos: 0}", tasks=task)
    assert validate(ok, data, capsys)[0] == 0


USER_TASK = ("[{{name: mine, kind: {kind}, train: d/train.{ext}, dev: d/train.{ext}, "
             "text_columns: [text], label_column: y{extra}}}]")


@pytest.mark.parametrize("kind, ext, body, expected", [
    ("classification", "csv", "text,y\na,1\nb,\nc,0\n",
     "train.csv: row 2: the label (column 'y') is empty"),
    ("regression", "csv", "text,y\na,1.0\nb,nan\nc,2\n",
     "train.csv: row 2, column 'y': label 'nan' is not a finite number"),
    ("regression", "csv", "text,y\na,1.0\nb,inf\nc,2\n",
     "train.csv: row 2, column 'y': label 'inf' is not a finite number"),
    ("classification", "csv", "text,y,text\na,1,x\nb,0,y\n",
     "train.csv:1: column 'text' appears twice"),
    ("classification", "json", '[{"text": "a", "y": 1}, {"text": null, "y": 0}]',
     "train.json: row 2: column 'text' is null"),
    ("classification", "jsonl", '{"text": "a", "y": 1}\n{"text": "b", "y": 0, "y": 1}\n',
     "key 'y' appears twice"),
    ("classification", "csv", "text,y\n,1\nb,0\n",
     "train.csv: row 1: column 'text' is empty"),
])
def test_bad_data_is_an_error_naming_file_row_and_column(tmp_path, tiny_teacher, capsys,
                                                          kind, ext, body, expected):
    write(tmp_path / f"d/train.{ext}", body)
    path = suite(tmp_path, tiny_teacher, tasks=USER_TASK.format(kind=kind, ext=ext, extra=""))
    code, out = validate(path, tmp_path, capsys)
    assert code == 2 and expected in out, out


def test_encoding_key_and_decode_errors_with_a_line_number(tmp_path, tiny_teacher, capsys):
    rows = "text,y\n" + "".join(f"caf\u00e9 {i},{i % 2}\n" for i in range(20))
    (tmp_path / "d").mkdir()
    (tmp_path / "d/train.csv").write_bytes(rows.encode("latin-1"))
    path = suite(tmp_path, tiny_teacher, tasks=USER_TASK.format(kind="classification",
                                                                ext="csv", extra=""))
    code, out = validate(path, tmp_path, capsys)
    assert code == 2 and "train.csv:2: cannot be decoded as utf-8" in out
    assert "encoding:" in out
    path = suite(tmp_path, tiny_teacher, tasks=USER_TASK.format(
        kind="classification", ext="csv", extra=", encoding: latin-1"))
    assert validate(path, tmp_path, capsys)[0] == 0


def test_run_refuses_before_training_too(tmp_path, tiny_teacher, data_dir, capsys):
    path = suite(tmp_path, tiny_teacher, methods="  - {name: finetune, student: {layers: 7}}")
    code = main(["run", str(path), "--data-dir", str(data_dir), "--output",
                 str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "student.layers: 7" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "models").exists()  # nothing was trained


@pytest.mark.parametrize("methods, expected", [
    ("  - name: q-then-prune\n    chain: [{name: quant-dynamic}, {name: prune-heads}]",
     "methods[0].chain[1]: prune-heads comes after quant-dynamic in this chain"),
    ("  - name: b-then-ffn\n    chain: [{name: bilstm, p_pos: 0}, {name: prune-ffn}]",
     "prune-ffn needs a BERT-like or DistilBERT transformer"),
    ("  - {name: pkd-skip, student: {layers: 1, init: random, hidden_size: 16,"
     " num_attention_heads: 2}}", "methods[0].student.hidden_size: 16 differs"),
    ("  - {name: tinybert, student: {layers: 1, init: random, hidden_size: 16,"
     " num_attention_heads: 4}}", "methods[0].student.num_attention_heads: 4 differs"),
    ("  - {name: distilbert, student: {layers: 1, init: random, hidden_size: 16,"
     " num_attention_heads: 2}}", "which the cosine loss needs; set alpha_cos: 0"),
])
def test_method_preconditions_are_checked_before_training(tmp_path, tiny_teacher, data_dir,
                                                          capsys, methods, expected):
    code, out = validate(suite(tmp_path, tiny_teacher, methods=methods), data_dir, capsys)
    assert code == 2 and expected in out, out


def test_a_hub_teacher_offline_is_a_note_not_a_failure(tmp_path, data_dir, capsys,
                                                       monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = suite(tmp_path, "no-such-org/no-such-bert")
    code, out = validate(path, data_dir, capsys)
    assert code == 0, out
    assert "could not be read here" in out and "were skipped" in out


@pytest.mark.parametrize("extra, expected", [
    (", metrics: [acuracy]", "tasks[0].metrics: 'acuracy' is not a classification metric. "
                             "Did you mean: accuracy?"),
    (", metrics: [f1]", "tasks[0].metrics: 'f1' is the F1 of class 1 of a binary task, and "
                        "mine has 3 labels"),
])
def test_user_task_metrics_are_checked_before_training(tmp_path, tiny_teacher, capsys, extra,
                                                        expected):
    write(tmp_path / "d/train.csv", "text,y\n" + "".join(f"t {i},{i % 3}\n" for i in range(30)))
    path = suite(tmp_path, tiny_teacher, tasks=USER_TASK.format(kind="classification",
                                                                ext="csv", extra=extra))
    code, out = validate(path, tmp_path, capsys)
    assert code == 2 and expected in out, out


def test_a_missing_local_teacher_or_student_checkpoint_is_an_error(tmp_path, tiny_teacher,
                                                                    data_dir, capsys):
    code, out = validate(suite(tmp_path, "./no-such-folder"), data_dir, capsys)
    assert code == 2 and "teacher.model: ./no-such-folder: no such folder" in out
    methods = "  - {name: kd, student: {layers: 1, init: ./no-such-ckpt}}"
    code, out = validate(suite(tmp_path, tiny_teacher, methods=methods), data_dir, capsys)
    assert code == 2 and "methods[0].student.init: ./no-such-ckpt: no such folder" in out
