"""Trackers: what is recorded around the timed calls (raw values; ``Summary`` summarises).

Wall time per call (``time.perf_counter``) and process CPU time per call
(``time.process_time``): on a shared machine the wall-clock ratio of two 2 ms models can drift by
half between repetitions while their CPU-time ratio stays within a tenth, so both are kept.
Memory: resident set size, and its peak (VmHWM, which exec() resets).
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path


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


class Timer:
    """Wall and CPU milliseconds of each call, appended to two lists."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def call(self, fn, arg) -> None:
        w, c = time.perf_counter(), time.process_time()
        try:
            fn(arg)
        finally:
            self.cpu.append((time.process_time() - c) * 1000)
            self.wall.append((time.perf_counter() - w) * 1000)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


#: the ISA extensions that decide CPU inference speed (vector, int8 dot products, bf16, AMX)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "asimd", "asimddp", "bf16", "i8mm", "sve")


def cpu_identity() -> dict:
    """The CPU's vendor, family, model and stepping, and which of :data:`ISA_FLAGS` it has, as
    /proc/cpuinfo says (empty where it says nothing): recorded beside every measurement, since
    the same model name covers CPUs with and without AVX-512 or AMX."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags |= set(value.split())
        elif key in ("vendor_id", "cpu family", "model", "stepping", "cpu implementer",
                     "cpu part") and key not in fields:
            fields[key.replace(" ", "_")] = value.strip()
    return {**fields, "isa": [f for f in ISA_FLAGS if f in flags]}


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def reset_peak_rss() -> None:
    """Linux: restart this process's peak resident set size (VmHWM) from its current one;
    elsewhere a no-op (there a forked process reports its parent's peak, too)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


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
