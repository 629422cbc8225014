"""TinyBERT's general distillation stage (issue 24): stage 1 against the pretrained teacher on a
corpus, cached under the cache's shared/ folder and reused by every job with the same teacher,
head shape, corpus, student, settings and seed; a missing corpus fails at validate."""
from __future__ import annotations

import pytest

from compressbench.errors import ConfigError
from compressbench.plugins import get_plugin_manager
from compressbench.suite import load_suite
from tests.conftest import suite_file, write


def suite_text(teacher, corpus: str) -> str:
    general = f"general_epochs: 1, general_corpus: '{corpus}', intermediate_epochs: 1"
    return (f"version: 1\nname: tiny\nteacher: {{model: '{teacher}'}}\ntasks: [sst2, cola]\n"
            f"methods:\n"
            f"  - {{name: tinybert, label: tb-a, {general}, student: {{layers: 1}}}}\n"
            f"  - {{name: tinybert, label: tb-b, {general}, temperature: 2.0,\n"
            f"     student: {{layers: 1}}}}\n"
            f"seeds: [1]\ntraining: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3,"
            f" max_seq_length: 32, max_train_samples: 24, max_val_samples: 8}}\n"
            f"measure: {{enabled: false}}\n")


def test_the_general_student_is_distilled_once_and_reused(tmp_path, tiny_teacher, data_dir):
    from compressbench.runner import run_suite

    corpus = write(tmp_path / "corpus.txt", "".join(f"passage number {i} about films\n"
                                                    for i in range(40)))
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, corpus)))
    records = run_suite(suite, get_plugin_manager(), data_dir, tmp_path / "run",
                        tmp_path / "cache")
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    general = list((tmp_path / "cache" / "shared" / "tinybert-general").iterdir())
    # sst2 and cola are both two-class: the same head shape, corpus, student and seed
    assert len(general) == 1
    students = [r["training"][0]["student"] for r in records if r["label"] != "teacher"]
    assert len(students) == 4 and all(s["init"] == "tinybert-general" for s in students)
    runs = [r["training"][0]["runs"] for r in records if r["label"] != "teacher"]
    assert [len(x) for x in runs] == [3, 2, 2, 2]  # general + two task stages, then reused


def test_a_missing_general_corpus_fails_validate(tmp_path, tiny_teacher, data_dir):
    from compressbench.preflight import preflight

    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher, tmp_path / "nope.txt")))
    with pytest.raises(ConfigError, match=r"methods\[0\].general_corpus: .*nope.txt: no such"):
        preflight(suite, get_plugin_manager(), data_dir, str(tiny_teacher))
