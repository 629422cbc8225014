"""Command-line overrides (``KEY=VALUE``): dotted keys, list indices and method labels, YAML
values, validated like the file, recorded in the suite text the run directory keeps."""
from __future__ import annotations

import pytest
import yaml

from compressbench.cli import main
from compressbench.errors import ConfigError
from compressbench.overrides import apply
from compressbench.suite import load_suite
from tests.conftest import REPO, write

SUITE = """version: 1
name: tiny
teacher: embedded
tasks: [sst2]
methods:
  - {name: finetune, label: small, student: {layers: 1}}
  - {name: kd, student: {layers: 2}}
  - name: chained
    chain: [{name: kd}, {name: quant-dynamic}]
seeds: [1, 2]
training: {epochs: 2}
"""


def test_keys_indices_labels_and_yaml_values():
    data = yaml.safe_load(SUITE)
    out = apply(data, ["training.epochs=1", "tasks=[sst2, stsb]", "methods[kd].temperature=4",
                       "methods[0].student.layers=3", "methods[chained].chain[1].per_channel=false",
                       "teacher.training.epochs=5", "measure.enabled=false", "seeds=[42]"], "s")
    assert out["training"] == {"epochs": 1} and out["tasks"] == ["sst2", "stsb"]
    assert out["methods"][1]["temperature"] == 4 and out["methods"][0]["student"]["layers"] == 3
    assert out["methods"][2]["chain"][1] == {"name": "quant-dynamic", "per_channel": False}
    assert out["teacher"] == {"model": "embedded", "training": {"epochs": 5}}
    assert out["measure"] == {"enabled": False} and out["seeds"] == [42]
    assert data["training"] == {"epochs": 2}  # the parsed file is left alone


@pytest.mark.parametrize("override,message", [
    ("epochs", "expected KEY=VALUE"),
    ("methods[kdd].alpha=1", "no entry of methods is labelled 'kdd'. Did you mean: kd"),
    ("methods[7].alpha=1", r"methods\[7\]: there are 3 entries"),
    ("training[0]=1", "training is not a list"),
    ("tasks.x=1", "tasks is not a mapping"),
    ("training.epochs=[", "the value is not valid YAML"),
])
def test_a_bad_override_is_one_error_naming_it(override, message):
    with pytest.raises(ConfigError, match=message):
        apply(yaml.safe_load(SUITE), [override], "suite.yaml")


def test_the_overridden_suite_is_validated_and_kept_with_its_overrides(tmp_path):
    path = write(tmp_path / "s.yaml", SUITE)
    plain = load_suite(path)
    suite = load_suite(path, ["training.epochs=1", "methods[kd].temperature=4"])
    assert suite.training.epochs == 1 and suite.methods[1].steps[0].params["temperature"] == 4
    assert suite.sha256 != plain.sha256  # its records say which suite made them
    assert suite.text.startswith(f"# {path} with command-line overrides:\n"
                                 f"#   training.epochs=1\n#   methods[kd].temperature=4\n")
    assert yaml.safe_load(suite.text)["training"] == {"epochs": 1}  # the suite the run used
    with pytest.raises(ConfigError, match="training: unknown key 'epochz'. Did you mean: epochs"):
        load_suite(path, ["training.epochz=1"])


def test_the_cli_takes_overrides_before_and_after_options(capsys):
    glue = str(REPO / "suites" / "glue.yaml")
    assert main(["validate", glue, "seeds=[42]", "--no-data", "tasks=[sst2, stsb]"]) == 0
    assert "(2 tasks, 18 methods, 1 seeds" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # argparse's own error, as for any bad option
        main(["validate", glue, "--no-data", "--bogus"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_limit_caps_every_split_and_the_report_says_so(tiny_teacher, tmp_path, capsys):
    from tests.conftest import make_data_dir
    data = make_data_dir(tmp_path / "data")
    path = write(tmp_path / "s.yaml", f"""version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods: [{{name: finetune, label: small, student: {{layers: 1}}}}]
training: {{epochs: 1, batch_size: 8, max_seq_length: 32}}
measure: {{enabled: false}}
""")
    run = tmp_path / "run"
    assert main(["run", str(path), "--data-dir", str(data), "--output", str(run),
                 "--cache-dir", str(tmp_path / "cache"), "--limit", "6",
                 "training.max_val_samples=4"]) == 0
    from compressbench import results
    recs = results.read(run)
    assert {r["data"]["train"] for r in recs} == {6} and {r["data"]["val"] for r in recs} == {4}
    assert {r["data"]["eval_dev"] for r in recs} == {6}
    assert "training.max_eval_samples=6" in (run / "suite.yaml").read_text()
    assert "**Not comparable with full runs**: the reported split was cut to at most 6" in \
        (run / "report.md").read_text()
