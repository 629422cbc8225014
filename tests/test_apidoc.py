"""The documentation plugin authors read is generated and runs: ``docs/api.md`` is
``compressbench.apidoc.render()``, every public name is documented, every ``>>>`` example in it
passes, and every Python block of ``docs/plugins.md`` and the README runs as written (a block
that begins with ``# excerpt`` only has to compile)."""
from __future__ import annotations

import doctest
import re

import pytest

from compressbench import api, apidoc
from compressbench.plugins import get_plugin_manager, load_plugin_file
from tests.conftest import REPO

API_MD = REPO / "docs" / "api.md"


def test_the_api_reference_is_generated_from_the_docstrings():
    assert API_MD.read_text() == apidoc.render(), (
        "docs/api.md is out of date: run `make docs` (python -m compressbench.apidoc > "
        "docs/api.md)")


def test_every_public_name_and_method_is_documented():
    assert apidoc.undocumented() == []
    listed = {n for _, _, modules in api.SECTIONS for names in modules.values() for n in names}
    assert set(api.__all__) == listed | set(api._MODULES)
    text = API_MD.read_text()
    assert all(f"`{name}" in text for name in listed)


def test_the_examples_in_the_api_reference_run():
    blocks = re.findall(r"```pycon\n(.*?)```", API_MD.read_text(), re.S)
    assert len(blocks) >= 8
    globs = {name: getattr(api, name) for name in api.__all__}
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(verbose=False)
    for i, block in enumerate(blocks):
        test = parser.get_doctest(block, dict(globs), f"docs/api.md example {i}", "api.md", 0)
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= len(blocks)


def python_blocks(path):
    text = (REPO / path).read_text()
    return [(path, i, b) for i, b in enumerate(re.findall(r"```python\n(.*?)```", text, re.S))]


BLOCKS = python_blocks("docs/plugins.md") + python_blocks("README.md")


@pytest.mark.parametrize("path,i,block", BLOCKS, ids=[f"{p}:{i}" for p, i, _ in BLOCKS])
def test_every_python_block_of_the_docs_runs(path, i, block, tmp_path):
    compile(block, f"{path} block {i}", "exec")
    if block.lstrip().startswith("# excerpt"):
        return
    if "compressbench.run(" in block or "compressbench.load(" in block:
        return  # the Python API example: tests/test_session.py runs it on a real run
    plugin = tmp_path / f"doc_block_{i}.py"
    plugin.write_text(block)
    pm = get_plugin_manager(entry_points=False)
    name = load_plugin_file(pm, plugin)
    hooks = {h.name for h in pm.get_hookcallers(pm.get_plugin(name)) or []}
    for what in ("methods", "backends", "reporters", "executors", "task_kinds", "tasks",
                 "augmenters"):
        if f"register_{what}" in hooks:  # registering works and registers something
            assert any(owner == name for owner in pm.registry(what).owners.values()), what
