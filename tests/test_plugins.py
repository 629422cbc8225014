"""The plugin contract: registration, duplicates, blocking, files, tracing, documentation."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from compressbench import hookimpl, hookspecs
from compressbench.errors import PluginError
from compressbench.plugins import describe, get_plugin_manager, load_plugin_file

TESTS = Path(__file__).parent


class Named:
    def __init__(self, name):
        self.name = name


def test_builtins_come_through_entry_points():
    pm = get_plugin_manager()
    pm.check_pending()  # no misspelled hook implementations anywhere
    assert {"tasks", "reporters", "finetune"} <= {name for name, _ in pm.list_name_plugin()}
    assert pm.methods.owners["finetune"] == "finetune"
    assert set(pm.reporters) >= {"md", "html"}


def test_register_into_fresh_manager():
    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(Named("my-method"))

    pm = get_plugin_manager(entry_points=False)
    pm.register(Plugin(), "mine")
    pm.check_pending()
    assert pm.methods.get("my-method").name == "my-method"
    assert pm.methods.owners["my-method"] == "mine"


def test_duplicate_name_names_both_plugins():
    class A:
        @hookimpl
        def register_methods(self, register):
            register(Named("finetune"))

    pm = get_plugin_manager()
    pm.register(A(), "copycat")
    with pytest.raises(PluginError, match=r"method 'finetune' is registered twice: by plugin "
                                          r"'(finetune|copycat)' and by plugin "
                                          r"'(copycat|finetune)'"):
        pm.methods


def test_registering_without_name_is_an_error():
    class Bad:
        @hookimpl
        def register_tasks(self, register):
            register(object())

    pm = get_plugin_manager(entry_points=False)
    pm.register(Bad(), "bad")
    with pytest.raises(PluginError, match="plugin 'bad' registered a task without a string"):
        pm.tasks


def test_plugin_exception_is_attributed():
    class Broken:
        @hookimpl
        def register_reporters(self, register):
            raise RuntimeError("boom")

    pm = get_plugin_manager(entry_points=False)
    pm.register(Broken(), "broken")
    with pytest.raises(PluginError, match="plugin 'broken' failed in register_reporters: "
                                          "RuntimeError: boom"):
        pm.reporters


def test_block_by_argument_and_environment(monkeypatch):
    assert "finetune" not in get_plugin_manager(blocked=["finetune"]).methods
    monkeypatch.setenv("COMPRESSBENCH_DISABLE_PLUGINS", "finetune, reporters")
    pm = get_plugin_manager()
    assert "finetune" not in pm.methods and "md" not in pm.reporters


def test_plugin_file(tmp_path):
    path = tmp_path / "my_plugin.py"
    path.write_text("from compressbench import hookimpl\n"
                    "class M:\n    name = 'from-file'\n"
                    "@hookimpl\ndef register_methods(register):\n    register(M())\n")
    pm = get_plugin_manager([path])
    assert pm.methods.owners["from-file"] == "file:my_plugin"
    rows = {r["name"]: r for r in describe(pm)}
    assert rows["file:my_plugin"]["registered"] == ["method:from-file"]
    assert rows["file:my_plugin"]["hooks"] == ["register_methods"]
    assert rows["finetune"]["version"] != "-"


def test_plugin_file_errors(tmp_path):
    with pytest.raises(PluginError, match="plugin file not found"):
        get_plugin_manager([tmp_path / "nope.py"])
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_anywhere\n")
    with pytest.raises(PluginError, match=r"bad.py: plugin failed to import: "
                                          r"ModuleNotFoundError"):
        load_plugin_file(get_plugin_manager(entry_points=False), bad)


def test_trace_writes_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("COMPRESSBENCH_TRACE", "1")
    pm = get_plugin_manager()
    pm.methods
    assert "register_methods" in capsys.readouterr().err


def test_misspelled_hook_is_caught():
    class Typo:
        @hookimpl
        def register_method(self, register):  # missing the s
            pass

    pm = get_plugin_manager(entry_points=False)
    pm.register(Typo(), "typo")
    with pytest.raises(Exception, match="unknown hook 'register_method'"):
        pm.check_pending()


def test_every_hook_is_documented_and_tested():
    """Each hookspec has a docstring with its parameters, and some test calls or implements it
    (datasette's meta-test)."""
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "compressbench_spec")]
    assert len(specs) == 13
    test_text = "\n".join(p.read_text() for p in TESTS.glob("test_*.py")
                          if p.name != Path(__file__).name)
    test_text += Path(__file__).read_text().split("def test_every_hook")[0]
    for name in specs:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 40, f"hook {name} needs a real docstring"
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in doc, f"hook {name}: document parameter {param}"
        assert re.search(rf"\b{name}\b", test_text), f"hook {name} is not exercised by a test"


def test_a_broken_installed_plugin_is_named_with_the_way_past_it(tmp_path, monkeypatch):
    """A distribution whose entry point cannot be imported: the error names the distribution,
    the entry point and the exact -p no:NAME; with that flag everything else works."""
    from compressbench.cli import main

    info = tmp_path / "brokenplug-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[compressbench]\nbroken = brokenplug_missing_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as err:
        get_plugin_manager()
    msg = str(err.value)
    assert "'broken'" in msg and "brokenplug 1.2" in msg and "ModuleNotFoundError" in msg
    assert "-p no:broken" in msg
    assert get_plugin_manager(blocked=["broken"]).methods.get("kd").name == "kd"
    assert main(["plugins", "-p", "no:broken"]) == 0
