"""How a run was started, kept so that its report can print a command that runs it again.

The runner writes ``RUN_DIR/invocation.json``: the suite file and the folder its relative paths
start from, the data directory, the ``--plugin`` files (with their digests), the blocked
plugins and the command line's execution settings, all as absolute paths. The run directory's
``suite.yaml`` is the suite as run (overrides applied); ``--suite-dir`` runs it with the paths
of the original. Installed plugins are not files: the line names the distributions and
versions the run used (``environment.json``'s ``plugins``).

A run directory may come from anyone: this file is read as data (strings only, no link), and
the command is only printed, quoted for a POSIX shell, never run.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from compressbench import safefs
from compressbench.plugins import files_digest

FILE = "invocation.json"
BUILTIN_DIST = "compressbench"


def invocation(runner) -> dict:
    """What ``runner`` (a :class:`compressbench.runner.Runner`) was started with."""
    suite, pm = runner.suite, runner.pm
    from_suite = {Path(p).resolve() for p in suite.plugins}
    files = [Path(p).resolve() for p in pm.plugin_files]
    given = {k: getattr(runner.execution, k) for k in ("executor", "workers", "threads")
             if getattr(runner.execution, k) != getattr(suite.execution, k)}
    return {"suite": str(suite.path.resolve()), "suite_dir": str(suite.base.resolve()),
            "suite_sha256": suite.sha256,
            "data_dir": str(Path(runner.data_dir).resolve()) if runner.data_dir else None,
            "plugin_files": [{"path": str(p), "digest": files_digest([p])}
                             for p in files if p not in from_suite],
            "blocked": list(pm.blocked_names),
            "execution": {k: v for k, v in given.items() if v is not None},
            "output": str(runner.run_dir.resolve())}


def write(run_dir: Path, runner) -> None:
    safefs.write_atomic(Path(run_dir) / FILE, json.dumps(invocation(runner), indent=2))


def read(run_dir: Path) -> dict | None:
    """The run's invocation, or None (a run from before it was kept, or a file that is not
    what the runner writes)."""
    path = Path(run_dir) / FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        inv = json.loads(safefs.read_bytes(path).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(inv, dict) or not isinstance(inv.get("suite_dir"), str):
        return None
    files = [f for f in inv.get("plugin_files") or [] if isinstance(f, dict)
             and isinstance(f.get("path"), str)]
    execution = inv.get("execution") if isinstance(inv.get("execution"), dict) else {}
    return {"suite_dir": inv["suite_dir"],
            "data_dir": inv["data_dir"] if isinstance(inv.get("data_dir"), str) else None,
            "plugin_files": files,
            "blocked": [b for b in inv.get("blocked") or [] if isinstance(b, str)],
            "execution": {k: v for k, v in execution.items()
                          if k in ("executor", "workers", "threads")
                          and isinstance(v, str | int) and not isinstance(v, bool)}}


def command(run_dir: Path, inv: dict, output: Path | None = None) -> list[str]:
    """The argument list that runs the run directory's suite again into ``output`` (default:
    ``RUN_DIR-rerun``) with the same data, plugin files, blocked plugins and execution."""
    run_dir = Path(run_dir).resolve()
    args = ["compressbench", "run", str(run_dir / "suite.yaml"), "--suite-dir", inv["suite_dir"]]
    if inv["data_dir"]:
        args += ["--data-dir", inv["data_dir"]]
    for f in inv["plugin_files"]:
        args += ["--plugin", f["path"]]
    for name in inv["blocked"]:
        args += ["-p", f"no:{name}"]
    for key, value in inv["execution"].items():
        args += [f"--{key}", str(value)]
    return args + ["--output", str(output or run_dir.with_name(run_dir.name + "-rerun"))]


def installed(env: dict) -> list[str]:
    """The installed plugins outside compressbench a run used, as ``pip install`` requirements
    (``NAME==VERSION``), from its environment's ``plugins``."""
    out = []
    for p in env.get("plugins") or []:
        source = str(p.get("source", "")) if isinstance(p, dict) else ""
        if source.startswith("entry point (") and source.endswith(")"):
            dist = source[len("entry point ("):-1]
            if dist != BUILTIN_DIST:
                out.append(f"{dist}=={p.get('version')}")
    return sorted(set(out))


def lines(run_dir: Path, report_options: str = "") -> tuple[str, str] | None:
    """The shell lines that run the run again and report on the new run (with
    ``report_options``), or None when the run did not keep its invocation."""
    inv = read(run_dir)
    if inv is None:
        return None
    args = command(run_dir, inv)
    return shlex.join(args), f"compressbench report {shlex.quote(args[-1])}{report_options}"
