"""The CLI: five broken suites each give one clear line and a non-zero exit; --help works."""
from __future__ import annotations

import pytest

from compressbench.cli import main
from tests.conftest import sst2_rows, suite_file, write

HEAD = "version: 1\nteacher: {model: embedded}\n"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(capsys, *argv) -> str:
    """Run the CLI, expect exit status 2 and exactly one line on stderr; return that line."""
    code, _, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("compressbench: error: ")
    return lines[0]


def test_bad_key(tmp_path, capsys):
    path = suite_file(tmp_path, HEAD + "tasks: [sst2]\nmethods: [finetune]\nsead: [1]\n")
    line = one_error_line(capsys, "validate", str(path))
    assert f"{path}: unknown key 'sead'. Did you mean: seeds?" in line


def test_unknown_method(tmp_path, capsys):
    path = suite_file(tmp_path, HEAD + "tasks: [sst2]\nmethods: [{name: fine-tune}]\n")
    line = one_error_line(capsys, "run", str(path), "--output", str(tmp_path / "run"))
    assert "methods[0].name: unknown method 'fine-tune'. Did you mean: finetune?" in line


def test_wrong_type(tmp_path, capsys):
    path = suite_file(tmp_path, HEAD + "tasks: [sst2]\nmethods: [finetune]\nseeds: 42\n")
    line = one_error_line(capsys, "validate", str(path))
    assert f"{path}: seeds: expected a list, got an integer 42" in line


def test_missing_data_file(tmp_path, capsys):
    data = tmp_path / "data"
    write(data / "glue/SST-2/train.tsv", sst2_rows(20))  # dev.tsv is missing
    path = suite_file(tmp_path, HEAD + "tasks: [sst2]\nmethods: [finetune]\n")
    line = one_error_line(capsys, "run", str(path), "--data-dir", str(data),
                           "--output", str(tmp_path / "run"))
    assert f"{data / 'glue/SST-2/dev.tsv'}: data file not found" in line
    assert not (tmp_path / "run" / "results.jsonl").exists()  # nothing ran


def test_malformed_tsv(tmp_path, capsys):
    data = tmp_path / "data"
    write(data / "glue/SST-2/train.tsv", sst2_rows(20))
    write(data / "glue/SST-2/dev.tsv", "sentence\tlabel\ngood film\t1\nbad film\n")
    path = suite_file(tmp_path, HEAD + "tasks: [sst2]\nmethods: [finetune]\n")
    line = one_error_line(capsys, "run", str(path), "--data-dir", str(data),
                           "--output", str(tmp_path / "run"))
    assert f"{data / 'glue/SST-2/dev.tsv'}:3: expected 2 tab-separated fields, found 1" in line


def test_missing_user_file_found_by_validate(tmp_path, capsys):
    path = suite_file(tmp_path, HEAD + "tasks:\n  - {name: mine, train: tr.csv, dev: dev.csv, "
                                       "text_columns: [text], label_column: y}\n"
                                       "methods: [finetune]\n")
    assert "tasks[0].train: file" in one_error_line(capsys, "validate", str(path))


def test_traceback_flag_raises(tmp_path):
    path = suite_file(tmp_path, HEAD + "tasks: [sst2]\nmethods: [finetune]\nsead: [1]\n")
    from compressbench.errors import ConfigError
    with pytest.raises(ConfigError):
        main(["validate", str(path), "--traceback"])


def test_validate_ok(capsys):
    from tests.conftest import REPO, SHARED_DATA
    if not (SHARED_DATA / "glue").is_dir():
        pytest.skip(f"GLUE files not found under {SHARED_DATA} (set COMPRESSBENCH_DATA_DIR)")
    for name in ("smoke", "glue", "conll"):
        code, out, _ = run_cli(capsys, "validate", str(REPO / "suites" / f"{name}.yaml"),
                               "--data-dir", str(SHARED_DATA))
        assert code == 0 and "ok (" in out, out


def test_validate_no_data_checks_the_suite_alone(capsys):
    from tests.conftest import REPO
    code, out, _ = run_cli(capsys, "validate", str(REPO / "suites" / "glue.yaml"), "--no-data")
    assert code == 0 and "ok (" in out and "not read" in out


@pytest.mark.parametrize("command", ["run", "report", "validate", "plugins"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: compressbench" in capsys.readouterr().out


def test_plugins_lists_builtins(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "finetune" in out and "method:finetune" in out and "task:conll2003" in out


def test_block_plugin(capsys):
    code, out, _ = run_cli(capsys, "plugins", "-p", "no:finetune")
    assert code == 0 and "method:finetune" not in out


def test_blocking_a_plugin_nothing_installs_is_an_error(capsys):
    code, _, err = run_cli(capsys, "plugins", "-p", "no:nosuch")
    assert code == 2 and "-p no:nosuch: no installed plugin or plugin file is named 'nosuch'" in err


def test_a_suite_using_a_blocked_plugin_says_it_is_blocked(capsys):
    from tests.conftest import REPO
    code, _, err = run_cli(capsys, "validate", str(REPO / "suites" / "glue.yaml"), "--no-data",
                           "-p", "no:kd")
    assert code == 2 and "method 'kd' is not available: the plugin 'kd' is blocked" in err


def test_plugins_method_shows_parameters_with_their_sources(capsys):
    assert main(["plugins", "--method", "kd"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kd: Hinton et al. 2015")
    assert "temperature: float = 2.0  # Hinton et al. 2015" in out
    assert main(["plugins", "--method", "bilstm"]) == 0
    assert "training defaults: {'learning_rate': 0.001}" in capsys.readouterr().out
    assert main(["plugins", "--method", "kdd"]) == 2
    assert "Did you mean: kd" in capsys.readouterr().err
