"""The suite schema: strict keys, types, suggestions, names resolved against plugins."""
from __future__ import annotations

import pytest

from compressbench.errors import ConfigError
from compressbench.plugins import get_plugin_manager
from compressbench.suite import Training, check, load_suite
from tests.conftest import suite_file

GOOD = """
version: 1
teacher: {model: embedded}
tasks: [sst2]
methods:
  - name: finetune
    label: small
    student: {layers: 2}
    training: {learning_rate: 1e-4}
  - name: mix
    chain: [{name: finetune, student: {layers: 3}}, {name: finetune}]
seeds: [1, 2]
training: {epochs: 1, max_train_samples: 100}
measure: {threads: 2}
"""


def test_good_suite_parses(tmp_path):
    suite = load_suite(suite_file(tmp_path, GOOD))
    assert suite.name == "suite"
    assert suite.task_names == ["sst2"]
    assert [m.label for m in suite.methods] == ["small", "mix"]
    assert [s.method for s in suite.methods[1].steps] == ["finetune", "finetune"]
    assert suite.methods[0].steps[0].params == {"student": {"layers": 2}}
    assert suite.seeds == (1, 2)
    assert suite.training.epochs == 1.0 and suite.measure.threads == 2
    # YAML 1.1 reads 1e-4 as a string; the schema accepts it as the number it obviously is
    cfg = suite.training_for(suite.methods[0].steps[0].training, "methods[0]")
    assert cfg.learning_rate == pytest.approx(1e-4)
    check(suite, get_plugin_manager())


@pytest.mark.parametrize("text, message", [
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\ntrainig: {epochs: 1}\n",
     "unknown key 'trainig'. Did you mean: training?"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\ntraining: {epochz: 1}\n",
     "training: unknown key 'epochz'. Did you mean: epochs?"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\ntraining: {epochs: three}\n",
     "training.epochs: expected a number, got a string 'three'"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\ntraining: {batch_size: 3.5}\n",
     "training.batch_size: expected an integer"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\nmeasure: {enabled: 1}\n",
     "measure.enabled: expected true or false"),
    ("tasks: [sst2]\nmethods: [finetune]\n", "version: expected 1"),
    ("version: 1\ntasks: []\nmethods: [finetune]\n", "tasks: missing or empty"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune, finetune]\n", "label 'finetune' is used twice"),
    ("version: 1\ntasks: [sst2, sst2]\nmethods: [finetune]\n", "task 'sst2' is listed twice"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\nseeds: []\n",
     "seeds: give at least one seed"),
    ("version: 1\ntasks: [sst2]\nmethods: [finetune]\nteacher: {training: {data_seed: 3}}\n",
     "teacher.training.data_seed: a data setting is suite-wide"),
    ("version: 1\ntasks: [sst2]\nmethods:\n  - {name: c, chain: [finetune], label: x}\n",
     "a chain takes only `name`, `chain` and `seeds`"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, seeds: []}]\n",
     "methods[0].seeds: give one or more distinct seeds"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, seeds: [1, 1]}]\n",
     "methods[0].seeds: give one or more distinct seeds"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, seeds: one}]\n",
     "methods[0].seeds: expected"),
    ("version: 1\ntasks: [{name: mine, train: a.csv}]\nmethods: [finetune]\n",
     "tasks[0]: missing required key 'dev'"),
    ("version: 1\n  bad: [\n", "not valid YAML"),
])
def test_structural_errors_name_file_and_key(tmp_path, text, message):
    path = suite_file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetun}]\n",
     "methods[0].name: unknown method 'finetun'. Did you mean: finetune? Installed:"),
    ("version: 1\ntasks: [sst-2]\nmethods: [finetune]\n",
     "tasks[0]: unknown task 'sst-2'. Did you mean: sst2?"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, studnet: {layers: 2}}]\n",
     "methods[0]: unknown key 'studnet'. Did you mean: student?"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, student: {layers: two}}]\n",
     "methods[0].student.layers: expected an integer"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, training: {epocs: 2}}]\n",
     "methods[0].training: unknown key 'epocs'. Did you mean: epochs?"),
    ("version: 1\ntasks: [sst2]\nmethods: [{name: finetune, training: {max_train_samples: 9}}]"
     "\n", "methods[0].training.max_train_samples: a data setting is suite-wide"),
])
def test_name_errors_resolved_against_plugins(tmp_path, text, message):
    path = suite_file(tmp_path, text)
    suite = load_suite(path)
    with pytest.raises(ConfigError) as err:
        check(suite, get_plugin_manager())
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_training_defaults_follow_bert_recipe():
    t = Training()
    assert (t.learning_rate, t.batch_size, t.warmup_ratio, t.max_grad_norm) == (5e-5, 32, 0.1, 1.0)
