"""The measuring fork server: ``python -m compressbench.measure.server`` (started by
:class:`compressbench.measure.launcher.ForkServer`).

It imports what every measuring process needs (:data:`PRELOAD`) once, then reads one JSON job
per line on stdin (``config``, ``out``, ``log``, ``env``) and forks a child for it that runs
:func:`compressbench.measure.child.main` with its output in ``log``; it answers
``{"pid": ...}`` when the child starts and ``{"exit": status}`` when it ends. One child at a
time. It exits when stdin closes (its parent is gone), and the kernel kills it, and any child,
when its parent dies (``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import warnings

from compressbench.measure.preload import PRELOAD  # noqa: E402


def answer(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def child(job: dict) -> int:
    """In the forked child: output to the job's log, stdin from /dev/null, the job's
    environment, then the measurement."""
    from compressbench.measure.launcher import die_with_parent

    die_with_parent()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    os.environ.update(job.get("env") or {})
    from compressbench.measure.child import main
    return main([job["config"], job["out"]])


def main() -> int:
    from compressbench.logs import quiet_logs
    from compressbench.measure.launcher import die_with_parent

    die_with_parent()
    quiet_logs()
    for module in PRELOAD:
        importlib.import_module(module)
    answer({"ready": True})
    for line in sys.stdin:
        job = json.loads(line)
        with warnings.catch_warnings():  # 3.12+: "this process is multi-threaded" (torch's
            warnings.simplefilter("ignore", DeprecationWarning)  # idle pool thread)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(job)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - the child's traceback goes to its log
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        answer({"exit": os.waitstatus_to_exitcode(status)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
