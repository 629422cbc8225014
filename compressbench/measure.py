"""Measurement, the same for every model: parameters, size, batch-1 latency, throughput, memory.

Latency and memory are measured in a fresh subprocess (``python -m compressbench.measure``) per
model, so one model's allocations and caches do not bias the next. Trackers record raw samples;
``Summary`` summarises them. Tokenization is done beforehand and never timed.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from compressbench.errors import CompressBenchError


@dataclass(frozen=True)
class Summary:
    """Order statistics of timing samples, in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    stdev: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> Summary:
        if not samples_ms:
            raise ValueError("no samples to summarise")
        s = sorted(samples_ms)

        def pct(q: float) -> float:  # linear interpolation, as numpy's default
            pos = (len(s) - 1) * q
            lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
            return s[lo] + (s[hi] - s[lo]) * (pos - lo)

        return cls(n=len(s), p50=pct(0.5), p90=pct(0.9), p99=pct(0.99),
                   mean=statistics.fmean(s), stdev=statistics.stdev(s) if len(s) > 1 else 0.0,
                   min=s[0], max=s[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far.

    Linux: VmHWM, which exec() resets. (ru_maxrss is not used there: it survives fork+exec, so
    a child would report its parent's peak.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------- parent side

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


def measure_model(folder: Path, features: list[dict], cfg, plugin_files=(),
                  reference: Path | None = None) -> dict:
    """Run the measuring subprocess on a saved model; ``features`` are tokenized examples
    (``input_ids`` and maybe ``token_type_ids``) at their real lengths. With ``reference``
    (the teacher), the two are also timed alternately on the same examples: a paired speed-up
    that drift between jobs (other load, clock changes) does not distort."""
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        inputs = Path(tmp) / "inputs.json"
        out = Path(tmp) / "out.json"
        inputs.write_text(json.dumps([{k: f[k] for k in ("input_ids", "token_type_ids")
                                       if k in f} for f in features]))
        cmd = [sys.executable, "-m", "compressbench.measure", str(folder), str(inputs), str(out),
               "--threads", str(cfg.threads), "--warmup", str(cfg.warmup),
               "--latency-samples", str(cfg.latency_samples), "--repeats", str(cfg.repeats),
               "--batch-size", str(cfg.throughput_batch_size),
               "--throughput-samples", str(cfg.throughput_samples)]
        for p in plugin_files:
            cmd += ["--plugin", str(p)]
        if reference is not None:
            cmd += ["--reference", str(reference)]
        env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads),
               "MKL_NUM_THREADS": str(cfg.threads), "TOKENIZERS_PARALLELISM": "false"}
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=cfg.timeout_s, preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            raise CompressBenchError(f"measuring {folder} took over measure.timeout_s="
                                     f"{cfg.timeout_s}s") from None
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CompressBenchError(f"measuring {folder} failed: {tail[0]}")
        return json.loads(out.read_text())


# --------------------------------------------------------------------------- child side

def time_calls(calls, samples: list[float]) -> None:
    """Run each ``(model, kwargs)``, appending its time in ms to ``samples``."""
    for model, kwargs in calls:
        start = time.perf_counter()
        try:
            model(**kwargs)
        finally:
            samples.append((time.perf_counter() - start) * 1000)


def batch1_inputs(model, inputs: list[dict]) -> list[dict]:
    """One forward's keyword arguments per example: (1, T) at its own length, no padding."""
    from compressbench.data import collate
    from compressbench.models import forward_kwargs

    return [forward_kwargs(model, collate([f])) for f in inputs]


def paired_latency(model, reference, mine: list[dict], inputs: list[dict],
                   warmup: int) -> dict:
    """Model and reference alternately on each example (which goes first alternates too);
    ``mine`` are the model's batch-1 arguments for ``inputs``."""
    import torch

    theirs = batch1_inputs(reference, inputs)
    a: list[float] = []
    b: list[float] = []
    with torch.inference_mode():
        for i in range(warmup):
            model(**mine[i % len(mine)])
            reference(**theirs[i % len(theirs)])
        for i, (x, y) in enumerate(zip(mine, theirs)):
            if i % 2 == 0:
                time_calls([(model, x)], a)
                time_calls([(reference, y)], b)
            else:
                time_calls([(reference, y)], b)
                time_calls([(model, x)], a)
    sa, sb = Summary.of(a), Summary.of(b)
    return {"model_ms": asdict(sa), "reference_ms": asdict(sb), "speedup": sb.p50 / sa.p50}


def run_child(folder: Path, inputs: list[dict], threads: int, warmup: int, n_latency: int,
              repeats: int, batch_size: int, n_throughput: int, plugin_files=(),
              reference: Path | None = None) -> dict:
    baseline = rss_mb()
    import torch

    from compressbench.data import collate
    from compressbench.models import forward_kwargs, load_model
    from compressbench.plugins import get_plugin_manager

    torch.set_num_threads(threads)
    if plugin_files:  # models defined in a plugin file must be importable to unpickle
        get_plugin_manager(plugin_files, entry_points=False)
    after_imports = rss_mb()
    model = load_model(folder)
    after_load = rss_mb()

    latency_inputs = batch1_inputs(model, inputs[:n_latency])
    samples: list[float] = []
    with torch.inference_mode():
        for i in range(warmup):
            model(**latency_inputs[i % len(latency_inputs)])
        for _ in range(repeats):
            time_calls([(model, kwargs) for kwargs in latency_inputs], samples)
        pool = inputs[:n_throughput]
        batches = [forward_kwargs(model, collate(pool[i:i + batch_size]))
                   for i in range(0, len(pool), batch_size)]
        model(**batches[0])  # warm-up at this batch shape
        start = time.perf_counter()
        try:
            for kwargs in batches:
                model(**kwargs)
        finally:
            elapsed = time.perf_counter() - start
    peak = peak_rss_mb()  # before a reference model is loaded
    paired = None
    if reference is not None:
        paired = paired_latency(model, load_model(reference), latency_inputs,
                                inputs[:n_latency], warmup)
        paired["reference"] = str(reference)
    return {
        "latency_ms": asdict(Summary.of(samples)),
        "paired": paired,
        "latency_samples_ms": [round(s, 4) for s in samples],
        "throughput": {"batch_size": batch_size, "examples": len(pool),
                       "examples_per_s": len(pool) / elapsed},
        "memory_mb": {"baseline_rss": baseline, "after_imports_rss": after_imports,
                      "model_rss": after_load - after_imports, "peak_rss": peak},
        "threads": threads, "torch_threads": torch.get_num_threads(),
        "mean_tokens": statistics.fmean(len(f["input_ids"]) for f in inputs[:n_latency]),
        "cpu": cpu_model(),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m compressbench.measure",
                                 description="Measure one saved model (used by the runner).")
    ap.add_argument("folder", type=Path)
    ap.add_argument("inputs", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--throughput-samples", type=int, default=256)
    ap.add_argument("--plugin", action="append", default=[])
    ap.add_argument("--reference", type=Path, default=None,
                    help="a second saved model (the teacher) for a paired speed-up")
    a = ap.parse_args(argv)
    from compressbench.logs import quiet_logs
    quiet_logs()
    result = run_child(a.folder, json.loads(a.inputs.read_text()), a.threads, a.warmup,
                       a.latency_samples, a.repeats, a.batch_size, a.throughput_samples,
                       a.plugin, a.reference)
    a.output.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
