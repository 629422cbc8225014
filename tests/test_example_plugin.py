"""Third-party plugins run in a suite with no change to the core: the example package
(installed through its entry point) and a one-off ``--plugin file.py``."""
from __future__ import annotations

import importlib.metadata
import os
import re

import pytest

from compressbench.cli import main
from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import REPO, suite_file
from tests.test_runner import suite_text

EXAMPLE = REPO / "examples" / "compressbench-drop-layers"


def example_installed() -> bool:
    return any(ep.name == "drop-layers"
               for ep in importlib.metadata.entry_points(group="compressbench"))


def test_example_package_runs_in_a_suite(tmp_path, tiny_teacher4, data_dir):
    if not example_installed():
        if os.environ.get("CI"):
            pytest.fail("CI must install examples/compressbench-drop-layers (see .ci/run)")
        pytest.skip(f"example plugin not installed: pip install -e {EXAMPLE}")
    pm = get_plugin_manager()
    assert pm.methods.owners["drop-layers"] == "drop-layers"  # found via its entry point
    methods = "  - {name: drop-layers, drop: 3}\n"
    suite = load_suite(suite_file(tmp_path, suite_text(tiny_teacher4, methods)))
    records = {r["job_id"]: r for r in run_suite(suite, pm, data_dir, tmp_path / "run",
                                                 tmp_path / "cache")}
    dropped = records["sst2/drop-layers/seed1"]
    assert dropped["status"] == "ok", dropped.get("error")
    teacher = records["sst2/teacher/seed1"]
    # 3 of 4 layers removed; one layer (hidden 32, FFN 64): Q, K, V, O 4*(32*32+32),
    # two LayerNorms 2*64, FFN in 32*64+64 and out 64*32+32 = 8,544 parameters
    per_layer = 4 * (32 * 32 + 32) + 2 * 64 + (32 * 64 + 64) + (64 * 32 + 32)
    assert teacher["model"]["parameters"] - dropped["model"]["parameters"] == 3 * per_layer
    assert dropped["training"][0]["runs"][0]["steps"] > 0  # recovery fine-tuning ran


def docs_snippet() -> str:
    """The plugin shown in docs/plugins.md: the test runs exactly what users read."""
    text = (REPO / "docs" / "plugins.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_docs_snippet_is_under_30_lines():
    assert len([line for line in docs_snippet().splitlines() if line.strip()]) < 30


def test_single_file_plugin_through_the_cli(tmp_path, tiny_teacher, data_dir, capsys):
    plugin = tmp_path / "soft_targets.py"
    plugin.write_text(docs_snippet())
    methods = "  - {name: soft-targets, temperature: 4, layers: 1}\n"
    path = suite_file(tmp_path, suite_text(tiny_teacher, methods))
    code = main(["run", str(path), "--plugin", str(plugin), "--data-dir", str(data_dir),
                 "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sst2/soft-targets/seed1: accuracy=" in err
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| soft-targets | soft-targets | 1 |" in report
    # listed in the suite instead of on the command line: same result
    path.write_text(suite_text(tiny_teacher, methods) + f"plugins: ['{plugin}']\n")
    assert main(["validate", str(path), "--data-dir", str(data_dir)]) == 0
