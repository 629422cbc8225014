"""The machine's background load while a model is timed, recorded beside its latencies.

A paired speed-up between two *different* models moves with background load (the eager fp32
teacher suffers more from a busy neighbour than a small int8 graph), and the teacher-against-
itself control cannot see it. So each measurement records, over its timed window:

- ``other_cores``: CPU time the rest of the machine used, in cores (``/proc/stat``'s busy
  time minus this process's own CPU time, divided by the wall time): 0 on a quiet machine,
  1.0 when one other core was busy throughout;
- ``cpu_pressure_pct``: the share of the window in which some runnable task waited for a CPU
  (Linux pressure stall information, ``/proc/pressure/cpu``), where the kernel has it;
- ``loadavg_1m`` at the end of the window.

:func:`busy_reason` says when those figures mean the measurement was taken under load.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

#: thresholds for "measured under load": a quarter of a core used by others on average, or
#: runnable tasks waiting for a CPU during a tenth of the window
OTHER_CORES_MAX = 0.25
PRESSURE_MAX_PCT = 10.0


def system_busy_s() -> float | None:
    """Seconds of CPU time every process on the machine has used (busy jiffies / CLK_TCK)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def pressure_some_us() -> int | None:
    """Total microseconds some task waited for a CPU (``/proc/pressure/cpu``), or None."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def snapshot() -> dict:
    return {"wall": time.monotonic(), "system": system_busy_s(), "own": own_cpu_s(),
            "pressure": pressure_some_us()}


def window(before: dict, after: dict) -> dict:
    """The load over the window between two snapshots."""
    wall = max(after["wall"] - before["wall"], 1e-9)
    out: dict = {"window_s": round(wall, 3)}
    if before["system"] is not None and after["system"] is not None:
        others = (after["system"] - before["system"]) - (after["own"] - before["own"])
        out["other_cores"] = round(max(0.0, others) / wall, 3)
    if before["pressure"] is not None and after["pressure"] is not None:
        out["cpu_pressure_pct"] = round(
            100 * (after["pressure"] - before["pressure"]) / (wall * 1e6), 2)
    try:
        out["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return out


def busy_reason(load: dict | None) -> str | None:
    """Why a measurement counts as taken under load, or None when it was quiet (or the
    figures are missing)."""
    if not load:
        return None
    reasons = []
    if load.get("other_cores") is not None and load["other_cores"] > OTHER_CORES_MAX:
        reasons.append(f"other processes used {load['other_cores']:.2f} cores")
    if load.get("cpu_pressure_pct") is not None and load["cpu_pressure_pct"] > PRESSURE_MAX_PCT:
        reasons.append(f"tasks waited for a CPU {load['cpu_pressure_pct']:.0f}% of the time")
    return "; ".join(reasons) or None
