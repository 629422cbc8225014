"""The parent side: one measuring process per (model, backend), started with one config file.

:func:`measure_model` measures a saved model on every backend the suite names. For each
backend it (1) skips it with the reason when the backend cannot run here at all, (2) prepares
the model (and the teacher) for it once, in a process of its own, caching the export under
``CACHE/runtimes/<backend>/<model>-<versions>/``, (3) times it in a fresh process.

Where the platform has ``os.fork``, each of those processes is forked from a server process
(:mod:`compressbench.measure.server`) that imported torch and transformers once: a fresh address
space with no model, no allocator history and no warm caches from an earlier measurement, that
starts in a twentieth of a second instead of the 4-5 s those imports take (three processes per
model made imports a sixth of a suite's wall time). ``COMPRESSBENCH_MEASURE_START=exec`` starts
each one with ``python -m compressbench.measure`` instead.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from compressbench.errors import CompressBenchError
from compressbench.measure.backend import REFERENCE, SavedModel, read_prepared, versions
from compressbench.measure.protocol import Settings

TMP_PREFIX = "compressbench-measure-"


def die_with_parent() -> None:
    """In the measuring child, before exec: have Linux kill it when its parent dies (even by
    ``kill -9``), so no orphan keeps measuring. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def remove_stale_temp_dirs() -> None:
    """Temporary folders of measurements whose compressbench process died (``kill -9``)."""
    import shutil

    for folder in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        pid = folder.name[len(TMP_PREFIX):].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: alive, another user's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def settings_of(cfg) -> Settings:
    return Settings(threads=cfg.threads, warmup=cfg.warmup, latency_samples=cfg.latency_samples,
                    repeats=cfg.repeats, throughput_batch_size=cfg.throughput_batch_size,
                    throughput_samples=cfg.throughput_samples)


def workdir(root: Path, backend, folder: Path, options: dict | None = None) -> Path:
    """Where ``backend``'s export of the model in ``folder`` is cached: per model (its cache
    key is the folder name), per version of the backend's packages and per setting of the
    backend (``measure.backends``)."""
    from compressbench import __version__
    parts = [__version__, versions(backend)] + ([options] if options else [])
    tag = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]
    return Path(root) / "runtimes" / backend.name / f"{Path(folder).name}-{tag}"


def start_method() -> str:
    """``fork`` (from :mod:`compressbench.measure.server`) where the platform has ``os.fork``,
    unless ``COMPRESSBENCH_MEASURE_START=exec``."""
    if os.environ.get("COMPRESSBENCH_MEASURE_START", "").strip().lower() == "exec":
        return "exec"
    return "fork" if hasattr(os, "fork") else "exec"


def server_env() -> dict:
    """The fork server imports this very compressbench (its folder first on the path) and
    nothing from the working directory (``PYTHONSAFEPATH``: a stray ``torch.py`` there is
    not run)."""
    import compressbench

    home = str(Path(compressbench.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": path}


class ForkServer:
    """The parent's handle on :mod:`compressbench.measure.server`: started on first use,
    restarted if it died (Ctrl-C reaches it too), closed with the parent."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None

    def ensure(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "compressbench.measure.server"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                         env=server_env(), preexec_fn=die_with_parent)
            if self.read(None) != {"ready": True}:
                raise CompressBenchError("the measuring fork server did not start (run with "
                                         "COMPRESSBENCH_MEASURE_START=exec to see why)")
            atexit.register(self.close)
        return self.proc

    def read(self, timeout_s: float | None) -> dict | None:
        import select

        if timeout_s is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(timeout_s, 0))
            if not ready:
                return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"gone": True}

    def run(self, job: dict, timeout_s: float) -> int | None:
        """Fork a child for ``job``; its exit status, or None when it ran past ``timeout_s``
        (it is killed)."""
        import signal
        import time

        proc = self.ensure()
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        started = self.read(30)
        if not started or "pid" not in started:
            self.close()
            raise CompressBenchError("the measuring fork server stopped answering")
        deadline = time.monotonic() + timeout_s
        done = self.read(deadline - time.monotonic())
        if done is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started["pid"], signal.SIGKILL)
            self.read(30)
            return None
        if "gone" in done:
            self.proc = None
            raise CompressBenchError("the measuring fork server exited mid-measurement")
        return done["exit"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


SERVER = ForkServer()


def run_child(request: dict, tmp: Path, timeout_s: int, threads: int, what: str) -> dict:
    """Run the measuring process (:mod:`compressbench.measure.child`) on ``request``; its JSON
    answer."""
    config, out = tmp / f"{request['phase']}.json", tmp / f"{request['phase']}-out.json"
    log = tmp / f"{request['phase']}.log"
    out.unlink(missing_ok=True)
    config.write_text(json.dumps(request))
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    if start_method() == "exec":
        try:
            proc = subprocess.run([sys.executable, "-m", "compressbench.measure", str(config),
                                   str(out)], env={**os.environ, **env}, capture_output=True,
                                  text=True, timeout=timeout_s, preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            code = None
        else:
            code, output = proc.returncode, proc.stderr or proc.stdout
    else:
        code = SERVER.run({"config": str(config), "out": str(out), "log": str(log),
                           "env": env}, timeout_s)
        output = log.read_text(errors="replace") if log.is_file() else ""
    if code is None:
        raise CompressBenchError(f"{what} took over measure.timeout_s={timeout_s}s")
    if code != 0 or not out.is_file():
        lines = output.strip().splitlines()
        tail = next((ln for ln in reversed(lines) if ln.strip()), f"exit status {code}")
        raise CompressBenchError(f"{what} failed: {tail.strip()}")
    return json.loads(out.read_text())


def ensure_prepared(backend, folder: Path, root: Path, base: dict, tmp: Path,
                    timeout_s: int) -> tuple[Path, dict]:
    """The model's export for ``backend`` (made now, in its own process, if not cached)."""
    wd = workdir(root, backend, folder, base.get("options"))
    if not getattr(backend, "needs_prepare", True) and backend.name == REFERENCE:
        # nothing to export and nothing to agree with: no process for it (any other backend's
        # prepare process also checks its outputs against PyTorch's, export or not)
        return wd, {"status": "ok", "info": {}, "agreement": None}
    done = read_prepared(wd)
    if done is None:
        done = run_child({**base, "phase": "prepare", "target":
                          {"folder": str(folder), "workdir": str(wd)}}, tmp, timeout_s,
                         base["settings"]["threads"], f"preparing {folder} for {backend.name}")
    return wd, done


def measure_on(backend, folder: Path, reference: Path | None, baseline: Path | None,
               root: Path, base: dict, tmp: Path, timeout_s: int) -> dict:
    """One backend's record for the model in ``folder`` (never raises for the model's sake)."""
    out: dict = {"versions": versions(backend)}
    if base.get("options"):
        out["options"] = base["options"]  # the backend's own settings (measure.backends)
    why = backend.missing()
    if why:
        return {**out, "status": "unavailable", "reason": why}
    runtime = SavedModel.at(folder).runtime_only
    if runtime and runtime != backend.name and runtime not in getattr(backend, "also_runs", ()):
        return {**out, "status": "unsupported", "reason": f"the model exists only for {runtime}"}
    try:
        wd, prep = ensure_prepared(backend, folder, root, base, tmp, timeout_s)
        if prep["status"] != "ok":
            return {**out, "status": "unsupported", "reason": prep["reason"]}
        out.update(prepare=prep.get("info", {}), agreement=prep.get("agreement"))
        request = {**base, "phase": "measure", "target": {"folder": str(folder),
                                                          "workdir": str(wd)}}
        notes = []
        if reference is not None:
            rwd, rprep = ensure_prepared(backend, reference, root, base, tmp, timeout_s)
            if rprep["status"] == "ok":
                request["reference"] = {"folder": str(reference), "workdir": str(rwd)}
            else:
                notes.append(f"no paired speed-up on {backend.name}: the teacher is "
                             f"unsupported there ({rprep['reason']})")
        # the teacher in PyTorch eager; on torch itself it is the reference when there is one,
        # and the teacher is not paired with itself
        on_torch = backend.name == REFERENCE
        if baseline is not None and not (on_torch and ("reference" in request or
                                                       Path(baseline) == Path(folder))):
            request["baseline"] = {"folder": str(baseline), "workdir": ""}
        if on_torch and reference is None and baseline is not None and \
                Path(baseline) == Path(folder):  # the teacher: timed against itself
            request["control"] = {"workdir": str(wd)}
        out.update(run_child(request, tmp, timeout_s, base["settings"]["threads"],
                             f"measuring {folder} on {backend.name}"))
        out["status"] = "ok"
        if notes:
            out["notes"] = notes
    except CompressBenchError as exc:
        out.update(status="failed", error=str(exc))
    return out


def measure_model(folder: Path, features: list[dict], cfg, pm=None, plugin_files=(),
                  reference: Path | None = None, baseline: Path | None = None,
                  cache_dir: Path | None = None, backends: list[str] | None = None) -> dict:
    """Measure the saved model in ``folder`` on each backend (default: the suite's
    ``cfg.backends``) with ``features`` (tokenized examples at their real lengths, in the
    order they are timed). ``reference``: the teacher, timed alternately with the model on
    the same backend (a paired speed-up); ``baseline``: the teacher timed in PyTorch eager
    alongside (the common baseline; default: ``reference``). Returns
    ``{"settings": ..., "backends": {name: record}}``."""
    from compressbench.plugins import get_plugin_manager

    pm = pm or get_plugin_manager(plugin_files)
    names = list(backends or getattr(cfg, "backends", None) or [REFERENCE])
    baseline = baseline if baseline is not None else reference
    settings = settings_of(cfg)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp_name:
        tmp = Path(tmp_name)
        root = Path(cache_dir) if cache_dir is not None else tmp
        inputs = tmp / "inputs.json"
        inputs.write_text(json.dumps([{k: f[k] for k in ("input_ids", "token_type_ids")
                                       if k in f} for f in features]))
        base = {"settings": asdict(settings), "features": str(inputs),
                "agreement_samples": getattr(cfg, "agreement_samples", 256),
                "plugin_files": [str(p) for p in (plugin_files or pm.plugin_files)]}
        options = getattr(cfg, "backend_options", None) or {}
        records = {name: measure_on(pm.backends.get(name, "measure.backends"), Path(folder),
                                    reference, baseline, root,
                                    {**base, "backend": name, "options": options.get(name),
                                     "backend_plugin": pm.backends.owners.get(name)},
                                    tmp, cfg.timeout_s)
                   for name in names}
    return {"settings": asdict(settings), "start": start_method(), "backends": records}
