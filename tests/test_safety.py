"""Nothing read from a run directory runs code: saved models load as data (weights plus a
recipe naming only marked functions of installed plugins), the pickle formats of compressbench
0.1 need an explicit, unsafely named opt-in."""
from __future__ import annotations

import json
import pickle
import sys

import pytest
import torch

from compressbench.cli import main
from compressbench.errors import CompressBenchError
from compressbench.models import load_model, save_model


class Payload:
    """Unpickling this writes a marker file: the proof that a load ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(folder, meta: dict, marker, name="model.pt"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compressbench.json").write_text(json.dumps(meta))
    (folder / name).write_bytes(pickle.dumps(Payload(marker)))
    return folder


def test_a_pickled_model_is_refused_without_the_unsafe_opt_in(tmp_path):
    marker = tmp_path / "pwned"
    folder = plant(tmp_path / "m", {"format": "torch", "kind": "classification"}, marker)
    with pytest.raises(CompressBenchError, match="--unsafe-load-pickle"):
        load_model(folder)
    assert not marker.exists()
    with pytest.raises(Exception):  # opted in: the pickle is loaded (and here it is no model)
        load_model(folder, unsafe_pickle=True)
    assert marker.exists()  # which shows the opt-in really is the dangerous path


def test_imports_named_by_the_folder_are_not_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "compressbench.json").write_text(json.dumps(
        {"format": "state", "kind": "classification", "imports": ["evil_module"]}))
    with pytest.raises(CompressBenchError, match="unsafe"):
        load_model(folder)
    assert not marker.exists() and "evil_module" not in sys.modules


@pytest.mark.parametrize("ref, why", [
    ("os:system", "not in compressbench or an installed compressbench plugin"),
    ("evil_module:run", "not in compressbench or an installed compressbench plugin"),
    ("compressbench.models:copy_model", "not a function marked"),  # real but not a step
    ("compressbench_plugins.quant:torch", "not a function marked"),
])
def test_a_recipe_may_name_only_marked_functions_of_installed_plugins(tmp_path, ref, why):
    folder = tmp_path / "m"
    folder.mkdir()
    meta = {"format": "weights", "kind": "classification",
            "factory": {"fn": ref, "kwargs": {"src": "/etc", "dst": str(tmp_path / "x")}},
            "steps": []}
    (folder / "compressbench.json").write_text(json.dumps(meta))
    torch.save({}, folder / "model.pt")
    with pytest.raises(CompressBenchError, match=why):
        load_model(folder)
    assert not (tmp_path / "x").exists()


def test_weights_are_read_weights_only(tmp_path, tiny_teacher):
    from compressbench.models import load_pretrained

    model = load_pretrained(str(tiny_teacher), "classification", 2)
    folder = save_model(model, tmp_path / "m", "classification")
    meta = json.loads((folder / "compressbench.json").read_text())
    meta["format"] = "weights"  # a recipe that builds from config.json ...
    (folder / "compressbench.json").write_text(json.dumps(meta))
    marker = tmp_path / "pwned"
    (folder / "model.pt").write_bytes(pickle.dumps(Payload(marker)))  # ... and planted weights
    with pytest.raises(CompressBenchError, match="cannot be read as weights only"):
        load_model(folder)
    assert not marker.exists()


def test_hf_folders_load_safetensors_only(tmp_path, tiny_teacher):
    from compressbench.models import load_pretrained

    folder = save_model(load_pretrained(str(tiny_teacher), "classification", 2),
                        tmp_path / "m", "classification")
    assert (folder / "model.safetensors").is_file()
    (folder / "model.safetensors").unlink()  # swapped for a pickle in the old layout
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(Exception):
        load_model(folder)
    assert not marker.exists()


def test_export_refuses_a_planted_pickle_and_names_the_flag(tmp_path, capsys):
    run = tmp_path / "run"
    marker = tmp_path / "pwned"
    plant(run / "models" / "sst2__x__seed1", {"format": "torch", "kind": "classification"},
          marker)
    record = {"job_id": "sst2/x/seed1", "task": "sst2", "label": "x", "seed": 1,
              "status": "ok", "model_dir": "models/sst2__x__seed1", "key": "k"}
    (run / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["export", str(run), "--task", "sst2", "--method", "x",
                 "-o", str(tmp_path / "out")]) == 2
    assert "--unsafe-load-pickle" in capsys.readouterr().err
    assert not marker.exists()


def test_a_file_plugin_declares_its_rebuild_step_and_the_model_round_trips(tmp_path,
                                                                          tiny_teacher):
    """The docs' post-training int8 example, as a one-off --plugin file: saved as weights plus
    a recipe naming the plugin's marked function; loading refuses it until the user loads the
    file again, and then rebuilds the same model."""
    from compressbench.models import load_pretrained, saved_format
    from compressbench.plugins import get_plugin_manager

    plugin = tmp_path / "myint8.py"
    plugin.write_text(
        "from compressbench import Method, hookimpl, rebuild_step, rebuild_with\n\n\n"
        "@rebuild_step\ndef int8(model):\n    import torch\n"
        "    from torch.ao.quantization import quantize_dynamic\n"
        "    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)\n\n\n"
        "class Int8(Method):\n    name = 'my-int8'\n\n    def build(self, ctx, params):\n"
        "        return rebuild_with(int8(ctx.model()), int8)\n\n\n"
        "@hookimpl\ndef register_methods(register):\n    register(Int8())\n")
    pm = get_plugin_manager([plugin])
    ctx = type("Ctx", (), {"model": lambda self: load_pretrained(str(tiny_teacher),
                                                                  "classification", 2).eval()})
    model = pm.methods.get("my-int8").build(ctx(), None)
    folder = save_model(model, tmp_path / "m", "classification")
    assert saved_format(folder) == "weights"
    ids = {"input_ids": torch.tensor([[101, 2023, 102]])}
    expected = model(**ids).logits
    del sys.modules["compressbench_userplugin_myint8"]  # a fresh process, plugin not loaded
    with pytest.raises(CompressBenchError, match="--plugin FILE.py"):
        load_model(folder)
    get_plugin_manager([plugin])
    torch.testing.assert_close(load_model(folder)(**ids).logits, expected)
