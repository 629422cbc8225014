"""The measuring process: ``python -m compressbench.measure CONFIG OUTPUT``.

``CONFIG`` is one JSON file written by :mod:`compressbench.measure.launcher` (see
:class:`~compressbench.measure.launcher.Request`); ``OUTPUT`` receives one JSON object. Two
phases, each in a fresh process: ``prepare`` (export or convert the model for the backend,
cached, and compare its outputs with PyTorch's) and ``measure`` (the timing protocol of
:mod:`compressbench.measure.protocol`), so an export's memory never counts as the model's.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from compressbench.measure.trackers import reset_peak_rss, rss_mb


def read_features(path: str) -> list[dict]:
    return json.loads(Path(path).read_text())


def get_backend(pm, name: str, options: dict | None = None):
    """The backend registered as ``name``, with the suite's settings for it."""
    from compressbench.measure.backend import configured
    return configured(pm.backends.get(name, "measure.backends"), options,
                      f"measure.backends.{name}")


def reference(pm):
    """PyTorch eager, the common baseline, found through the registry like any backend."""
    from compressbench.measure.backend import REFERENCE
    return pm.backends.get(REFERENCE, "measure.backends")


def prepare(req: dict, pm) -> dict:
    """Export/convert ``req['target']`` for the backend into its workdir (atomically), with the
    agreement of its outputs with PyTorch's; the result is also written to the workdir."""
    from compressbench.batching import n_tokens
    from compressbench.measure import protocol
    from compressbench.measure.backend import PREPARED, REFERENCE, SavedModel, Unsupported

    backend = get_backend(pm, req["backend"], req.get("options"))
    target = req["target"]
    model = SavedModel.at(Path(target["folder"]))
    workdir = Path(target["workdir"])
    tmp = workdir.with_name(f"{workdir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    feats = read_features(req["features"])
    threads = req["settings"]["threads"]
    try:
        try:
            info = backend.prepare(model, tmp, feats[:8])
            out: dict = {"status": "ok", "info": info or {}, "agreement": None}
        except Unsupported as exc:
            out = {"status": "unsupported", "reason": str(exc)}
        if out["status"] == "ok" and backend.name != REFERENCE and not model.runtime_only:
            pool = feats[:req["agreement_samples"]]
            pool = sorted(pool, key=n_tokens)
            batches = [protocol.as_batch(pool[i:i + 16]) for i in range(0, len(pool), 16)]
            mine = backend.load(model, tmp, threads)
            theirs = reference(pm).load(model, tmp, threads)
            a = [theirs.logits(theirs(theirs.inputs(b))) for b in batches]
            b = [mine.logits(mine(mine.inputs(x))) for x in batches]
            out["agreement"] = protocol.agreement(a, b, [x["attention_mask"] for x in batches],
                                                  model.kind)
        (tmp / PREPARED).write_text(json.dumps(out))
        if workdir.exists():  # another process prepared it meanwhile
            shutil.rmtree(workdir, ignore_errors=True)
        os.replace(tmp, workdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def measure(req: dict, pm, baseline_rss: float, after_imports: float) -> dict:
    from compressbench.measure import load, protocol
    from compressbench.measure.backend import REFERENCE, SavedModel
    from compressbench.measure.trackers import cpu_model

    s = protocol.Settings(**req["settings"])
    backend = get_backend(pm, req["backend"], req.get("options"))
    feats = read_features(req["features"])
    target = req["target"]
    model = SavedModel.at(Path(target["folder"]))
    session, model_rss = protocol.measure_memory(
        lambda: backend.load(model, Path(target["workdir"]), s.threads))
    before = load.snapshot()
    out = protocol.solo(session, feats, s)
    out["memory_mb"] = protocol.memory(baseline_rss, after_imports, model_rss)
    describe = getattr(session, "describe", None)
    if callable(describe):
        out["runtime"] = describe()
    sessions, names = [session], []
    ref = req.get("reference")
    if ref:
        sessions.append(backend.load(SavedModel.at(Path(ref["folder"])), Path(ref["workdir"]),
                                     s.threads))
        names.append("teacher")
    base = req.get("baseline")
    if base:
        sessions.append(reference(pm).load(SavedModel.at(Path(base["folder"])), None,
                                           s.threads))
        names.append("teacher on torch")
    control = req.get("control")
    if control:  # the teacher against a second copy of itself: the protocol's own check
        sessions.append(backend.load(model, Path(control["workdir"]), s.threads))
        names.append("control")
    out["paired"] = out["vs_eager"] = None
    if len(sessions) > 1:
        timers = protocol.paired(sessions, feats, s)
        pairs = {n: protocol.speedup(timers[0], t, n) for n, t in zip(names, timers[1:])}
        out["paired"] = pairs.get("teacher")
        out["vs_eager"] = pairs.get("teacher on torch")
        out["control"] = pairs.get("control")
        if backend.name == REFERENCE and out["paired"]:  # the teacher on torch *is* the
            out["vs_eager"] = out["paired"]  # common baseline
    out["load"] = load.window(before, load.snapshot())  # the machine's load while timing
    out.update(threads=s.threads, cpu=cpu_model())
    return out


def plugins_for(req: dict):
    """The measuring process's plugins: the built-in runtimes (the reference among them), the
    run's plugin files, and the one installed plugin that registered this backend (the
    request's ``backend_plugin``), not every installed plugin: every backend's process
    imports the same, so its baseline memory is the same, whoever wrote the backend."""
    from compressbench import runtimes as builtin
    from compressbench.plugins import get_plugin_manager, load_entry_points

    pm = get_plugin_manager([Path(p) for p in req.get("plugin_files", [])], entry_points=False)
    if pm.get_plugin("backends") is None:
        pm.register(builtin, "backends")
    owner = req.get("backend_plugin")
    if owner and pm.get_plugin(owner) is None:
        load_entry_points(pm, only=[owner])
    if req["backend"] not in pm.backends:  # a request from an older launcher
        load_entry_points(pm)
    return pm


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m compressbench.measure CONFIG.json OUTPUT.json (used by the "
              "runner)", file=sys.stderr)
        return 2
    reset_peak_rss()  # a forked child starts with its fork server's high-water mark
    baseline_rss = rss_mb()
    req = json.loads(Path(argv[0]).read_text())
    from compressbench.logs import quiet_logs

    quiet_logs()
    pm = plugins_for(req)
    import importlib

    import torch

    from compressbench.measure.preload import PRELOAD
    for module in PRELOAD:  # model code: imported before, never counted as a model's memory
        importlib.import_module(module)
    torch.set_num_threads(req["settings"]["threads"])
    after_imports = rss_mb()
    if req["phase"] == "prepare":
        out = prepare(req, pm)
    else:
        out = measure(req, pm, baseline_rss, after_imports)
    Path(argv[1]).write_text(json.dumps(out))
    return 0
