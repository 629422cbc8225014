"""Quiet measurements under the local executor: while one worker times a model, every other
worker of the run holds still at a step boundary.

Three ``flock`` files in the run directory (the kernel releases a lock when its holder dies,
even by ``kill -9``, so a killed worker never blocks the others):

- ``.measure.lock``: one measurement at a time (exclusive);
- ``.quiet-gate.lock`` and ``.quiet-busy.lock``: a turnstile. A worker running a job holds
  *busy* shared, and gives it back at every pause point (each training step, each evaluation
  batch) only to pass the *gate* and take it again. A measurement takes the gate exclusively
  (no worker passes it any more), then busy exclusively (it waits for every worker's step in
  flight to end), times the model, and lets go of both. Nothing else of the run computes while
  a model is timed, and no worker can starve the measurement (the gate stops new steps).

A worker is given its turnstile (:class:`compressbench.execute.Worker`); the training loop and
evaluation call its ``pause_point`` between steps. A worker without one (``inline``, a single
process) pays nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from compressbench import rundir, safefs

GATE = ".quiet-gate.lock"
BUSY = ".quiet-busy.lock"


class Turnstile:
    """One process's side of the turnstile (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.fds = {name: safefs.open_rw(rundir.inside(run_dir, name))
                    for name in (rundir.MEASURE_LOCK, GATE, BUSY)}
        self.holding = False  # busy held shared: this worker is computing
        self.paused_s = 0.0  # time spent waiting at pause points (the cost of quiet)

    def hold(self) -> None:
        """Start computing: pass the gate (waits while a measurement runs), take busy shared."""
        import time

        if self.holding:
            return
        start = time.perf_counter()
        fcntl.flock(self.fds[GATE], fcntl.LOCK_SH)
        try:
            fcntl.flock(self.fds[BUSY], fcntl.LOCK_SH)
        finally:
            fcntl.flock(self.fds[GATE], fcntl.LOCK_UN)
        self.holding = True
        self.paused_s += time.perf_counter() - start

    def release(self) -> None:
        """Stop computing (a job ended): a measurement need not wait for this worker."""
        if self.holding:
            fcntl.flock(self.fds[BUSY], fcntl.LOCK_UN)
            self.holding = False

    def pause_point(self) -> None:
        """Between two steps: let a waiting measurement run, then carry on."""
        if self.holding:
            self.release()
            self.hold()

    @contextlib.contextmanager
    def measuring(self):
        """The machine to this measurement alone: other workers hold at their next pause
        point, and the measurement starts once every step in flight has ended."""
        was = self.holding
        self.release()
        order = (rundir.MEASURE_LOCK, GATE, BUSY)
        taken = []
        try:
            for name in order:
                fcntl.flock(self.fds[name], fcntl.LOCK_EX)
                taken.append(name)
            yield
        finally:
            for name in reversed(taken):
                fcntl.flock(self.fds[name], fcntl.LOCK_UN)
            if was:
                self.hold()

    def close(self) -> None:
        """Release whatever this process holds of the turnstile."""
        for fd in self.fds.values():
            os.close(fd)  # releases whatever this process held
        self.fds, self.holding = {}, False
