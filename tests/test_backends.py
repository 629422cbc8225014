"""Backends: ONNX export, ONNX Runtime and OpenVINO measurement, quant-ort, a backend written
as a plugin file, failures that keep the accuracy, and the report's backend columns."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compressbench import models
from compressbench.errors import CompressBenchError, ConfigError
from compressbench.measure import measure_model
from compressbench.plugins import get_plugin_manager
from compressbench.suite import Measure, load_suite
from tests.conftest import suite_file

ort = pytest.importorskip("onnxruntime", reason="pip install 'compressbench[onnx]'")
onnxrt = pytest.importorskip("compressbench.runtimes.onnxruntime")

QUICK = dict(latency_samples=4, warmup=1, throughput_samples=4, throughput_batch_size=2)


def feats(n: int = 6, pair: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        length = 5 + 3 * i
        ids = [101] + rng.integers(1000, 5000, length).tolist() + [102]
        types = [0] * len(ids) if not pair else [0] * (len(ids) // 2) + [1] * (
            len(ids) - len(ids) // 2)
        out.append({"input_ids": ids, "token_type_ids": types})
    return out


def batch(features: list[dict]) -> dict:
    from compressbench.measure.protocol import as_batch
    return {k: torch.from_numpy(v) for k, v in as_batch(features).items()}


@pytest.mark.parametrize("kind,labels", [("classification", 2), ("regression", 1),
                                         ("token", 9)])
def test_onnx_export_equals_pytorch(tmp_path, tiny_teacher, kind, labels):
    model = models.load_pretrained(str(tiny_teacher), kind, labels).eval()
    path = onnxrt.export_onnx(model, tmp_path / "m.onnx", kind)
    fused = onnxrt.optimize(path, model, [batch([f]) for f in feats(3)])
    x = batch(feats(4, pair=True))  # padded batch of 4, two segments: dynamic axes
    with torch.inference_mode():
        want = models.logits_of(model(**x)).numpy()
    got = onnxrt.run_onnx(path, [x])[0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4
    assert fused  # a plain BERT gets ONNX Runtime's attention fusion, with equal outputs
    assert not model.training  # exporting left the caller's model in eval mode


def test_quantized_torch_model_is_unsupported_on_onnxruntime_with_its_reason(
        tmp_path, tiny_teacher):
    from compressbench_plugins.quant import dynamic_int8

    teacher = models.save_model(models.load_pretrained(str(tiny_teacher), "classification", 2),
                                tmp_path / "teacher", "classification")
    int8 = models.load_model(teacher)
    int8 = models.rebuild_with(dynamic_int8(int8, False, True), dynamic_int8, per_channel=False,
                               lstm=True)
    folder = models.save_model(int8, tmp_path / "int8", "classification")
    cfg = Measure(**QUICK, backends=("torch", "onnxruntime"))
    m = measure_model(folder, feats(), cfg, reference=teacher, cache_dir=tmp_path / "cache")
    torch_run, onnx_run = m["backends"]["torch"], m["backends"]["onnxruntime"]
    assert torch_run["status"] == "ok" and torch_run["paired"]["reference_ms"]["n"] == 4
    assert onnx_run["status"] == "unsupported"
    assert "PyTorch-quantized modules" in onnx_run["reason"] and "quant-ort" in onnx_run["reason"]
    assert onnx_run["versions"]["onnxruntime"] == ort.__version__

    # the teacher itself runs there: paired with the teacher in PyTorch eager, and compared
    cfg = Measure(**QUICK, backends=("onnxruntime",))
    m = measure_model(teacher, feats(), cfg, baseline=teacher, cache_dir=tmp_path / "cache")
    onnx_run = m["backends"]["onnxruntime"]
    assert onnx_run["status"] == "ok", onnx_run
    assert onnx_run["paired"] is None and onnx_run["vs_eager"]["model_ms"]["n"] == 4
    assert onnx_run["vs_eager"]["cpu_speedup"] > 0
    assert onnx_run["agreement"]["max_abs_logit_diff"] < 1e-4
    assert onnx_run["agreement"]["prediction_agreement"] == 1.0
    assert onnx_run["prepare"]["transformer_fusion"] is True
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache/runtimes/onnxruntime")
                    .iterdir())
    assert cached == ["int8", "teacher"]  # each prepared once (the verdict on int8 too)
    teacher_export = next((tmp_path / "cache/runtimes/onnxruntime").glob("teacher-*"))
    assert (teacher_export / "model.onnx").is_file()


def test_openvino_backend(tmp_path, tiny_teacher):
    pytest.importorskip("openvino", reason="pip install 'compressbench[openvino]'")
    teacher = models.save_model(models.load_pretrained(str(tiny_teacher), "classification", 2),
                                tmp_path / "teacher", "classification")
    cfg = Measure(**QUICK, backends=("openvino",))
    run = measure_model(teacher, feats(), cfg, baseline=teacher,
                        cache_dir=tmp_path / "cache")["backends"]["openvino"]
    assert run["status"] == "ok", run
    assert run["agreement"]["prediction_agreement"] is not None
    assert run["agreement"]["max_abs_logit_diff"] < 0.1  # bf16 where the CPU has it
    assert "inference_precision" in run["runtime"]
    assert run["versions"]["openvino"]


def docs_backend() -> str:
    """The float64 backend exactly as docs/plugins.md shows it."""
    import re

    from tests.conftest import REPO
    text = (REPO / "docs" / "plugins.md").read_text()
    start = text.index("A complete backend, PyTorch in float64, in one file")
    return re.compile(r"```python\n(.*?)```", re.S).search(text, start).group(1)


PLUGIN = docs_backend() + '''

class Broken(Fp64):
    name = "broken"

    def load(self, model, workdir, threads):
        raise RuntimeError("this runtime crashed")


class NoExport(Fp64):
    name = "fp64-noexport"
    needs_prepare = False  # nothing to export: its outputs are still checked against PyTorch's


@api.hookimpl(specname="register_backends")  # beside the docs' own, which registers Fp64
def register_two_more(register):
    register(Broken())
    register(NoExport())
'''


@pytest.fixture(scope="module")
def backend_run(tmp_path_factory, tiny_teacher):
    """One suite: a teacher, PyTorch int8, quant-ort and a chain
    finetune -> quant-ort, measured on torch, onnxruntime and the plugin file's backends."""
    from tests.conftest import make_data_dir

    tmp = tmp_path_factory.mktemp("backends")
    data = make_data_dir(tmp / "data")
    (tmp / "runtimes.py").write_text(PLUGIN)
    text = f"""
version: 1
plugins: [runtimes.py]
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods:
  - {{name: quant-dynamic, label: int8}}
  - {{name: quant-ort, label: ort-int8}}
  - name: small-ort
    chain:
      - {{name: finetune, student: {{layers: 1}}}}
      - {{name: quant-ort}}
training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_train_samples: 40, max_val_samples: 8}}
measure: {{latency_samples: 4, warmup: 1, throughput_samples: 4, throughput_batch_size: 2,
          agreement_samples: 8,
          backends: [torch, onnxruntime, torch-fp64, broken, fp64-noexport]}}
"""
    from compressbench.runner import run_suite
    suite = load_suite(suite_file(tmp, text))
    pm = get_plugin_manager([tmp / "runtimes.py"])
    records = run_suite(suite, pm, data, tmp / "run", tmp / "cache")
    return tmp, data, suite, {r["label"]: r for r in records}


def test_a_plugin_file_backend_is_measured_and_a_failing_one_keeps_the_accuracy(backend_run):
    _, _, _, records = backend_run
    assert all(r["status"] == "ok" for r in records.values()), records
    teacher, int8 = records["teacher"], records["int8"]
    fp64 = teacher["measure"]["backends"]["torch-fp64"]
    assert fp64["status"] == "ok" and fp64["prepare"] == {"dtype": "float64"}
    assert fp64["agreement"]["max_abs_logit_diff"] < 1e-4  # float64 vs float32: tiny
    assert fp64["vs_eager"]["model_ms"]["n"] == 4
    noexport = teacher["measure"]["backends"]["fp64-noexport"]  # needs_prepare = False
    assert noexport["status"] == "ok" and noexport["agreement"]["max_abs_logit_diff"] < 1e-4
    assert noexport["agreement"]["prediction_agreement"] == 1.0
    for r in (teacher, int8):
        broken = r["measure"]["backends"]["broken"]
        assert broken["status"] == "failed" and "this runtime crashed" in broken["error"]
        assert r["metrics"]["accuracy"] == r["score"]  # the accuracy is kept
    assert int8["measure"]["backends"]["onnxruntime"]["status"] == "unsupported"
    assert int8["measure"]["backends"]["torch"]["paired"]["speedup"] > 0


def test_quant_ort_is_scored_by_onnx_runtime(backend_run):
    from compressbench import data as D
    from compressbench import results
    from compressbench.runner import Runner

    tmp, data_dir, suite, records = backend_run
    for label in ("ort-int8", "small-ort"):
        r = records[label]
        assert r["model"]["format"] == "onnx"
        assert r["model"]["dtypes"].get("int8", 0) > 0
        runs = r["measure"]["backends"]
        assert runs["torch"]["status"] == "unsupported"
        assert "exists only for onnxruntime" in runs["torch"]["reason"]
        assert runs["onnxruntime"]["status"] == "ok"
        assert runs["onnxruntime"]["paired"]["reference"] == "teacher"
        assert runs["onnxruntime"]["vs_eager"]["reference"] == "teacher on torch"
        # the recorded predictions are ONNX Runtime's own on the reported split
        runner = Runner(suite, get_plugin_manager([tmp / "runtimes.py"]), data_dir)
        task = runner.pm.tasks.get("sst2")
        prepared = D.prepare(task, data_dir, suite.training)
        encoded = D.encode(task, models.load_tokenizer(runner.teacher_ref),
                           prepared.evals["dev"], suite.training.max_seq_length)
        sess = ort.InferenceSession(str(results.model_path(tmp / "run", r) / "model.onnx"))
        names = {i.name for i in sess.get_inputs()}
        preds = [int(sess.run(None, {k: v.numpy() for k, v in batch([f]).items()
                                     if k in names})[0].argmax(-1)[0]) for f in encoded]
        saved = results.read_predictions(tmp / "run", r["job_id"])["dev"]
        assert saved == preds
        assert r["score"] == pytest.approx(task.score(prepared.evals["dev"], preds)["accuracy"])


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_quant_ort_modes_keep_a_working_int8_graph(tmp_path, tiny_teacher, mode):
    from types import SimpleNamespace

    from compressbench_plugins.runtime_quant import OrtParams, QuantOrt

    from compressbench.runtimes import onnxruntime as O

    model = models.load_pretrained(str(tiny_teacher), "classification", 2).eval()
    ctx = SimpleNamespace(model=lambda: model, cache_dir=tmp_path, pad_id=0,
                          task=SimpleNamespace(name="t", kind="classification"),
                          features={"val": feats(6)}, emit=lambda *a: None)
    q = QuantOrt().build(ctx, OrtParams(mode=mode, calibration_samples=6))
    assert isinstance(q, O.OnnxModel)
    ops = {n.op_type for n in __import__("onnx").load(str(q.path)).graph.node}
    assert ({"DynamicQuantizeLinear", "MatMulInteger"} & ops if mode == "dynamic"
            else {"QuantizeLinear", "DequantizeLinear"} <= ops)
    x = batch(feats(3))
    with torch.inference_mode():
        want = models.logits_of(model(**x)).numpy()
    got = q(**x).logits.numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 0.05  # int8 rounding only


def test_quant_openvino_keeps_a_working_int8_model(tmp_path, tiny_teacher):
    pytest.importorskip("nncf", reason="pip install 'compressbench[openvino]'")
    from types import SimpleNamespace

    from compressbench_plugins.runtime_quant import OpenVINOParams, QuantOpenVINO

    from compressbench.runtimes.openvino import OpenVINOModel

    model = models.load_pretrained(str(tiny_teacher), "classification", 2).eval()
    ctx = SimpleNamespace(model=lambda: model, cache_dir=tmp_path, pad_id=0,
                          task=SimpleNamespace(name="t", kind="classification"),
                          features={"val": feats(6)}, emit=lambda *a: None)
    q = QuantOpenVINO().build(ctx, OpenVINOParams(calibration_samples=6))
    assert isinstance(q, OpenVINOModel)
    saved = models.save_model(q, tmp_path / "saved", "classification")
    assert json.loads((saved / "compressbench.json").read_text())["format"] == "openvino"
    loaded = models.load_model(saved)
    assert models.weight_dtypes(loaded).get("int8", 0) > 0
    x = batch(feats(3))
    with torch.inference_mode():
        want = models.logits_of(model(**x)).numpy()
    got = loaded(**x).logits.numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 0.05


def test_report_shows_backends_and_why_a_pair_was_not_measured(backend_run):
    from compressbench.cli import main

    tmp, _, _, _ = backend_run
    assert main(["report", str(tmp / "run"), "--format", "md,html,backends-csv"]) == 0
    md = (tmp / "run/report.md").read_text()
    assert "### sst2: per backend" in md
    assert ("| method | backend | accuracy | p50 ms | p90 ms | CPU p50 ms | speed-up (same "
            "backend) | speed-up vs eager |") in md
    assert "| ort-int8 | onnxruntime | " in md and "| teacher | torch-fp64 | " in md
    assert "int8 on onnxruntime: unsupported, PyTorch-quantized modules" in md
    assert "teacher on broken: failed" in md
    # the tiny teacher cannot be told apart from the majority class, so nothing is picked ...
    assert "the teacher is not distinguishable from the majority-class baseline" in md
    from compressbench.report import summarise
    from compressbench.report.summary import what_to_pick

    table = summarise(tmp / "run").tables[0]
    table.teacher.flags.clear()  # ... but for a teacher that is not, each backend is asked
    questions = [p.question for p in what_to_pick(table, None, 1.0).picks]
    assert "fastest within 1 point on onnxruntime" in questions
    rows = (tmp / "run/report-backends.csv").read_text().splitlines()
    assert rows[0].startswith("task,method,main_metric,score,backend,status,reason,p50_ms")
    assert any(line.startswith("sst2,ort-int8,accuracy,") and ",onnxruntime,ok," in line
               for line in rows)
    html = (tmp / "run/report.html").read_text()
    assert "sst2: per backend" in html and "onnxruntime" in html


def test_export_as_onnx(backend_run):
    from compressbench.export import export

    tmp, _, _, _ = backend_run
    out = export(tmp / "run", "sst2", "teacher", tmp / "teacher-onnx", fmt="onnx")
    assert (out / "model.onnx").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "model.safetensors").exists()
    assert json.loads((out / "compressbench.json").read_text())["format"] == "onnx"
    card = (out / "README.md").read_text()
    assert "library_name: onnxruntime" in card and "ort.InferenceSession" in card
    loaded = models.load_model(out)
    assert type(loaded).__name__ == "OnnxModel"
    x = batch(feats(2))
    original = models.load_model(tmp / "run" / json.loads(
        (tmp / "teacher-onnx/compressbench-record.json").read_text())["model_dir"])
    with torch.inference_mode():
        want = models.logits_of(original(**x)).numpy()
    assert np.abs(loaded(**x).logits.numpy() - want).max() < 1e-4
    with pytest.raises(CompressBenchError, match="PyTorch-quantized"):
        export(tmp / "run", "sst2", "int8", tmp / "int8-onnx", fmt="onnx")
    assert not (tmp / "int8-onnx").exists()
    again = export(tmp / "run", "sst2", "ort-int8", tmp / "ort-onnx", fmt="onnx")
    assert (again / "model.onnx").is_file()


def test_runtime_only_step_must_end_its_chain(tmp_path, tiny_teacher, data_dir):
    from compressbench.preflight import preflight

    text = f"""
version: 1
teacher: {{model: {tiny_teacher}}}
tasks: [sst2]
methods:
  - name: bad
    chain: [{{name: quant-ort}}, {{name: quant-dynamic}}]
"""
    suite = load_suite(suite_file(tmp_path, text))
    with pytest.raises(ConfigError, match=r"methods\[0\].*quant-ort makes a model that exists "
                                          r"only for onnxruntime.*last step"):
        preflight(suite, get_plugin_manager(), data_dir, str(tiny_teacher), prepare=False)


def test_unknown_or_missing_backend_is_a_config_error(tmp_path, tiny_teacher, data_dir):
    from compressbench.preflight import preflight

    text = f"""
version: 1
teacher: {{model: {tiny_teacher}}}
tasks: [sst2]
methods: [quant-dynamic]
measure: {{backends: [torch, onnxruntme]}}
"""
    suite = load_suite(suite_file(tmp_path, text))
    with pytest.raises(ConfigError, match="measure.backends: unknown backend 'onnxruntme'.*"
                                          "onnxruntime"):
        preflight(suite, get_plugin_manager(), data_dir, str(tiny_teacher), prepare=False)


def test_backend_protocol_is_checked_at_registration():
    from compressbench import hookimpl
    from compressbench.errors import PluginError

    class NoLoad:
        name = "half"

        def missing(self):
            return None

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(NoLoad())

    pm = get_plugin_manager(entry_points=False)
    pm.register(Plugin(), "half-plugin")
    with pytest.raises(PluginError, match="plugin 'half-plugin' registered backend 'half' "
                                          "without prepare, load"):
        pm.backends.get("half")


def test_old_records_read_as_a_torch_measurement():
    from compressbench.record import Record

    old = {"job_id": "t/x/seed1", "task": "t", "label": "x", "seed": 1, "status": "ok",
           "measure": {"latency_ms": {"n": 2, "p50": 2.0, "p90": 3.0, "p99": 3.0, "mean": 2.5,
                                      "stdev": 0.7, "min": 2.0, "max": 3.0},
                       "paired": {"speedup": 2.5}, "throughput": {"examples_per_s": 9.0},
                       "memory_mb": {"peak_rss": 100.0}}}
    r = Record.from_dict(old)
    torch_run = r.backend("torch")
    assert torch_run.ok and torch_run.latency_ms.p50 == 2.0 and torch_run.examples_per_s == 9.0
    assert torch_run.paired.speedup == torch_run.vs_eager.speedup == 2.5


def test_a_backend_takes_settings_of_its_own_checked_recorded_and_used(tmp_path, tiny_teacher,
                                                                       data_dir):
    """``- onnxruntime: {graph_optimization: basic}``: typed, checked with the key named, part
    of the export's cache folder and of the record, and the session it times uses it."""
    from compressbench.measure.backend import configured
    from compressbench.preflight import preflight

    text = f"""
version: 1
teacher: {{model: {tiny_teacher}}}
tasks: [sst2]
methods: [quant-dynamic]
measure: {{backends: [torch, {{onnxruntime: {{graph_optimization: basic}}}}]}}
"""
    suite = load_suite(suite_file(tmp_path, text))
    assert suite.measure.backends == ("torch", "onnxruntime")
    assert suite.measure.backend_options == {"onnxruntime": {"graph_optimization": "basic"}}
    pm = get_plugin_manager()
    preflight(suite, pm, data_dir, str(tiny_teacher), prepare=False)
    for bad, match in (("{graph_optimisation: basic}", "unknown key 'graph_optimisation'. "
                                                      "Did you mean: graph_optimization"),
                       ("{graph_optimization: fast}", "'fast' is not one of all, extended")):
        wrong = load_suite(suite_file(tmp_path, text.replace(
            "{graph_optimization: basic}", bad), "bad.yaml"))
        with pytest.raises(ConfigError, match=f"measure.backends.onnxruntime.*{match}"):
            preflight(wrong, pm, data_dir, str(tiny_teacher), prepare=False)
    torch_only = load_suite(suite_file(tmp_path, text.replace(
        "[torch, {onnxruntime: {graph_optimization: basic}}]", "[{torch: {x: 1}}]"), "t.yaml"))
    with pytest.raises(ConfigError, match="the torch backend takes no settings"):
        preflight(torch_only, pm, data_dir, str(tiny_teacher), prepare=False)

    backend = configured(pm.backends.get("onnxruntime"), {"graph_optimization": "basic"})
    assert backend.options.graph_optimization == "basic"
    assert pm.backends.get("onnxruntime").options.graph_optimization == "all"  # untouched
    model = models.load_pretrained(str(tiny_teacher), "classification", 2).eval()
    models.save_model(model, tmp_path / "m", "classification")
    m = measure_model(tmp_path / "m", feats(), suite.measure, pm, cache_dir=tmp_path / "cache")
    ort_run = m["backends"]["onnxruntime"]
    assert ort_run["status"] == "ok" and ort_run["options"] == {"graph_optimization": "basic"}
    assert "options" not in m["backends"]["torch"]
    (export,) = (tmp_path / "cache/runtimes/onnxruntime").iterdir()
    plain = measure_model(tmp_path / "m", feats(), Measure(**QUICK, backends=("onnxruntime",)),
                          pm, cache_dir=tmp_path / "cache")
    assert plain["backends"]["onnxruntime"]["status"] == "ok"
    assert len(list((tmp_path / "cache/runtimes/onnxruntime").iterdir())) == 2  # its own export
    from compressbench.measure import SavedModel
    session = backend.load(SavedModel.at(tmp_path / "m"), export, 1)
    assert session.sess.get_session_options().graph_optimization_level == \
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


TOY_RUNTIME = '''
import json
from pathlib import Path

import torch

import compressbench



class Scaled(torch.nn.Module):
    """A "runtime" whose saved format is one JSON file: logits = scale * (number of tokens)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        n = attention_mask.sum(-1, keepdim=True).float()  # (B, 1)
        return type("Out", (), {"logits": torch.cat([n, -n], -1) * self.scale})()

    def save_files(self, folder):
        (Path(folder) / "scale.json").write_text(json.dumps(self.scale))
        return {"format": "scaled", "runtime": "toy"}


class Toy:
    name, description, packages = "toy", "a toy runtime with a saved format", ()
    saved_format, marker = "scaled", "X"

    def missing(self):
        return None

    def prepare(self, model, workdir, sample):
        return {}

    def load(self, model, workdir, threads):
        raise NotImplementedError

    def load_saved(self, folder, config=None):
        self.verify_saved(folder)
        return Scaled(json.loads((Path(folder) / "scale.json").read_text()))

    def verify_saved(self, folder):
        if not (Path(folder) / "scale.json").is_file():
            raise compressbench.CompressBenchError(f"{folder}: scale.json is missing")


@compressbench.hookimpl
def register_backends(register):
    register(Toy())
'''


def test_a_runtime_owns_its_saved_format_saved_loaded_and_verified_with_no_core_edit(tmp_path):
    """A plugin runtime's format goes through save_model / load_model like the built-ins':
    the model object writes it, the runtime that owns it loads and verifies it."""
    from compressbench.measure.backend import SavedModel, marker, markers
    plugin = tmp_path / "toy_runtime.py"
    plugin.write_text(TOY_RUNTIME)
    pm = get_plugin_manager([plugin])
    toy = pm.backends.get("toy")
    module = toy.load_saved.__globals__["Scaled"](2.0)
    folder = models.save_model(module, tmp_path / "m", "classification")
    assert json.loads((folder / "compressbench.json").read_text())["format"] == "scaled"
    loaded = models.load_model(folder)
    ids = torch.tensor([[5, 6, 7, 0]])
    out = loaded(input_ids=ids, attention_mask=torch.tensor([[1, 1, 1, 0]])).logits
    assert out.tolist() == [[6.0, -6.0]]
    assert SavedModel.at(folder).runtime_only == "toy"  # measured on its own runtime only
    assert marker("toy") == "X" and marker("no-such-backend") is None
    # two backends that name no marker, and one that names a taken one, still differ
    marks = markers(["torch", "toy", "no-such-backend", "other-unnamed"])
    assert marks["torch"] == "o" and marks["toy"] == "X" and len(set(marks.values())) == 4
    (folder / "scale.json").unlink()
    with pytest.raises(CompressBenchError, match="scale.json is missing"):
        models.load_model(folder)
    (folder / "compressbench.json").write_text(json.dumps({"format": "nobody-owns-this",
                                                           "kind": "classification"}))
    with pytest.raises(CompressBenchError, match="unknown format 'nobody-owns-this'"):
        models.load_model(folder)


def test_a_model_that_says_why_it_cannot_export_is_refused_in_its_words(tmp_path):
    """The record shows the model's reason ("packed sequences ..."), not the exporter's."""
    from compressbench_plugins.bilstm import BiLSTMStudent

    from compressbench.measure.backend import Unsupported
    model = BiLSTMStudent(vocab_size=100, embedding_dim=8, hidden_size=4, mlp_size=4,
                          num_labels=2, kind="classification", pair=False)
    with pytest.raises(Unsupported, match="packed sequences .* are not exported to ONNX"):
        onnxrt.export_onnx(model, tmp_path / "m.onnx", "classification")
    assert not (tmp_path / "m.onnx").exists()


def test_every_measuring_process_imports_the_same_plugins_and_its_backends_own():
    """The measuring child loads the built-in runtimes, the run's plugin files and the one
    installed plugin that registered the backend: not every installed plugin (which made a
    plugin backend's process start ~110 MB higher than a built-in's)."""
    from compressbench.measure.child import plugins_for

    def loaded(req):
        return {name for name, plugin in plugins_for(req).list_name_plugin() if plugin}

    assert loaded({"backend": "torch", "backend_plugin": "backends"}) == {"backends"}
    if "torch-autocast" in get_plugin_manager().backends:  # the example package, installed
        assert loaded({"backend": "torch-autocast", "backend_plugin": "autocast"}) == \
            {"backends", "autocast"}
