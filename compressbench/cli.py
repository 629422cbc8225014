"""The ``compressbench`` command: run, report, export, validate, plugins."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from compressbench.errors import CompressBenchError
from compressbench.hookspecs import hookimpl

DATA_ENV = "COMPRESSBENCH_DATA_DIR"


class ConsoleProgress:
    """Prints one line per job event and the suite's progress; itself a plugin of the job
    hooks. On a terminal the lines go through ``tqdm.write`` (they do not glue onto a training
    bar); elsewhere there are no bars, only these lines."""

    def __init__(self, stream=None):
        self._stream, self.t0 = stream, {}

    @property
    def stream(self):
        return self._stream or sys.stderr  # looked up late: tests and callers may swap it

    def say(self, text: str) -> None:
        stream = self.stream
        if getattr(stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm
            tqdm.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    @hookimpl
    def run_progress(self, done, total, failed, running, skipped, eta_s):
        if done == skipped and skipped and not failed:  # before the first job of this run
            self.say(f"[compressbench] {skipped} of {total} jobs already done, skipped")
            return
        if done == skipped:
            return
        eta = "" if eta_s is None else f"; about {duration(eta_s)} left"
        self.say(f"[compressbench] {done}/{total} jobs done, {failed} failed, {running} "
                 f"running{eta}")

    @hookimpl
    def job_started(self, job):
        self.t0[job.id] = time.time()
        self.say(f"[compressbench] {job.id}: started")

    @hookimpl
    def job_event(self, job, event, data):
        if event == "validation":
            self.say(f"[compressbench] {job.id}: epoch {data['epoch']} validation "
                     f"{data['metric']}={data['value']:.4f}{' (best)' if data['best'] else ''}")
        elif event == "cache_hit":
            self.say(f"[compressbench] {job.id}: reusing cached {data['method']} model "
                     f"{data['key']}")

    @hookimpl
    def job_finished(self, job, record):
        took = time.time() - self.t0.pop(job.id, time.time())
        r = record
        if r.ok:
            timings = [f"{b.backend} p50 {b.latency_ms.p50:.2f} ms" +
                       (f" ({b.vs_eager.speedup:.2f}× eager)" if b.vs_eager else "")
                       if b.ok else f"{b.backend} {b.status}" for b in r.backends.values()]
            what = f"{r.main_metric}={r.score:.4f}" + "".join(f", {t}" for t in timings)
        else:
            what = f"FAILED: {r.error}"
        self.say(f"[compressbench] {job.id}: {what} ({took:.0f}s)")


def duration(seconds: float) -> str:
    """'45 s', '12 min', '1 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="load a plugin from a .py file (repeatable)")
    parser.add_argument("-p", dest="blocked", action="append", default=[], metavar="no:NAME",
                        help="block an installed plugin, e.g. -p no:finetune (repeatable); "
                             "also $COMPRESSBENCH_DISABLE_PLUGINS=a,b")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of an error")


def pick_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latency-budget", type=float, default=None, metavar="MS",
                        help="also name, per task, the best model whose p50 latency at batch 1 "
                             "is at most MS milliseconds")
    parser.add_argument("--within", type=float, default=1.0, metavar="POINTS",
                        help="margin for 'as good as the teacher' in the what-to-pick summary, "
                             "in points of the main metric x 100 (default 1)")
    parser.add_argument("--examples", type=int, default=3, metavar="N",
                        help="examples the teacher gets right and a method wrong, shown per "
                             "method (default 3)")


def suite_arguments(parser: argparse.ArgumentParser) -> None:
    """SUITE, its KEY=VALUE overrides and --limit (run and validate)."""
    parser.add_argument("suite", type=Path)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override the suite: a dotted key and a YAML value, e.g. "
                             "training.epochs=1 tasks=[sst2] 'methods[kd-3L].temperature=4'")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="a quick look: at most N examples in every split (training, "
                             "validation, reported); the report says the scores are not "
                             "comparable with full runs")
    parser.add_argument("--suite-dir", type=Path, default=None, metavar="DIR",
                        help="resolve the suite's relative paths (teacher, task files, "
                             "transfer file, plugins) from DIR instead of the suite file's "
                             "folder: a run directory's suite.yaml, run again (the report's "
                             "reproduce line)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="compressbench",
        description="Compare ways of compressing a BERT model on the same data, seeds and "
                    "measurement.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite (resumes a partial run)",
                         description="Fine-tune the teacher, build every compressed model, "
                                     "evaluate, measure and write a report. Finished jobs in "
                                     "the output directory are skipped.")
    suite_arguments(run)
    run.add_argument("--track", default="", metavar="NAME[,NAME]",
                     help="experiment tracking into the run directory: tensorboard "
                          "(compressbench[tensorboard]) and/or mlflow (compressbench[mlflow])")
    run.add_argument("--data-dir", type=Path, default=None,
                     help=f"local data (glue/<TASK>/*.tsv, conll2003/*.txt); default "
                          f"${DATA_ENV}, else the Hugging Face Hub")
    run.add_argument("--output", type=Path, default=None, metavar="RUN_DIR",
                     help="run directory (default runs/<suite name>)")
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="model cache (default $COMPRESSBENCH_CACHE or ~/.cache/compressbench)")
    run.add_argument("--no-report", action="store_true", help="do not write report.md/html")
    run.add_argument("--executor", default=None, metavar="NAME",
                     help="who runs the jobs: this process (inline, the default), --workers "
                          "processes on this machine (local), Ray tasks (ray), or a plugin's "
                          "executor (`compressbench plugins` lists them); default: the "
                          "suite's execution.executor")
    run.add_argument("--workers", type=positive_int, default=None, metavar="N",
                     help="local: worker processes (default: the cores); ray: jobs at once "
                          "(default: as many as the cluster fits)")
    run.add_argument("--threads", type=positive_int, default=None, metavar="T",
                     help="torch threads per job; local default: the cores shared among the "
                          "jobs running, re-read at every training step; ray: the CPUs each "
                          "job reserves (default 1)")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="ray: the cluster to join ('auto': the one this machine belongs "
                          "to, or ray://HEAD:10001); default: start Ray on this machine")
    pick_options(run)
    common(run)

    rep = sub.add_parser("report", help="render tables from a run directory",
                         description="Write report files from RUN_DIR/results.jsonl; works on "
                                     "partial runs and never re-runs anything.")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--format", default="md,html",
                     help="comma-separated reporter names: md, html, csv, backends-csv, json "
                          "or a plugin's "
                          "(default md,html)")
    rep.add_argument("--grid", action="store_true",
                     help="also show every grid setting tried, with its validation score")
    rep.add_argument("--data-dir", type=Path, default=None,
                     help="only for runs that predate references/: rebuild the gold labels "
                          "the error analysis needs from this data directory")
    pick_options(rep)
    common(rep)

    cmp = sub.add_parser("compare", help="one report over several run directories",
                         description="Merge the records, predictions and references of two or "
                                     "more runs of the same tasks, data and teacher into a new "
                                     "run directory and report on it (the same paired "
                                     "statistics as within a run); refused where their scored "
                                     "examples, data or teacher differ.")
    cmp.add_argument("runs", type=Path, nargs="*", metavar="RUN_DIR")
    cmp.add_argument("--db", type=Path, default=None,
                     help="also every run of --suite that `compressbench index` put in DB")
    cmp.add_argument("--suite", default=None, help="with --db: the suite name to take")
    cmp.add_argument("-o", "--output", type=Path, default=None,
                     help="the merged run directory (default runs/compare-NAME-NAME)")
    cmp.add_argument("--force", action="store_true", help="replace a non-empty --output")
    cmp.add_argument("--format", default="md,html", help="reporters, as for report")
    pick_options(cmp)
    common(cmp)

    idx = sub.add_parser("index", help="index run directories into a SQLite file",
                         description="Walk the given folders for run directories and put "
                                     "every record (one row per job, one per job and backend) "
                                     "into a SQLite file that SQL, `compare --db` and "
                                     "compressbench.load can query; re-indexing a run "
                                     "replaces its rows.")
    idx.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    idx.add_argument("--db", type=Path, default=Path("results.db"))
    common(idx)

    val = sub.add_parser("validate", help="check a suite without running it",
                         description="Check the suite's keys, types, method and task names, "
                                     "method parameters and your own data files.")
    suite_arguments(val)
    common(val)

    exp = sub.add_parser("export", help="write one model of a run with its tokenizer and a "
                                        "model card",
                         description="Copy the model a run built for a task and method into "
                                     "a folder, with its tokenizer, a README.md model card "
                                     "(the run's metrics and measurements) and its result "
                                     "record.")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--task", required=True)
    exp.add_argument("--method", required=True, help="the method's label in the suite "
                                                     "(or 'teacher')")
    exp.add_argument("--seed", type=int, default=None, help="needed when the run has several")
    exp.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    exp.add_argument("--force", action="store_true", help="replace a non-empty DIR")
    exp.add_argument("--format", choices=("native", "onnx"), default="native",
                     help="native: the model as the run saved it; onnx: an ONNX graph for ONNX "
                          "Runtime (needs compressbench[onnx]), checked against PyTorch")
    exp.add_argument("--unsafe-load-pickle", action="store_true",
                     help="allow a model saved by compressbench 0.1 as a pickle; loading it can "
                          "run code from the run directory: only for runs you trust")
    exp.add_argument("--push-to-hub", default=None, metavar="REPO",
                     help="then upload the folder to the Hugging Face Hub model repository "
                          "REPO (created if missing; needs huggingface_hub and a token: "
                          "`huggingface-cli login` or $HF_TOKEN)")
    exp.add_argument("--private", action="store_true", help="with --push-to-hub: a new "
                                                            "repository is private")
    common(exp)

    val = sub.choices["validate"]
    val.add_argument("--data-dir", type=Path, default=None,
                     help=f"local data, as for run (default ${DATA_ENV}, else the Hub)")
    val.add_argument("--no-data", action="store_true",
                     help="skip reading the data files (quick check of the suite alone)")
    val.add_argument("--within", type=float, default=1.0, metavar="POINTS",
                     help="note tasks where the suite's seeds and examples cannot detect a "
                          "difference of POINTS between two methods (default 1)")
    val.add_argument("--previous", type=Path, default=None, metavar="RUN_DIR",
                     help="a previous run of this suite whose seed spread to plan with "
                          "(default runs/<suite name> where it exists)")

    plug = sub.add_parser("plugins", help="list loaded plugins and what each registered")
    plug.add_argument("--json", action="store_true", help="machine-readable output")
    plug.add_argument("--method", metavar="NAME",
                      help="show one method: its description and parameters with defaults")
    common(plug)
    return ap


def blocked_names(values: list[str]) -> list[str]:
    out = []
    for v in values:
        if not v.startswith("no:"):
            raise CompressBenchError(f"-p {v}: expected -p no:NAME to block plugin NAME")
        out.append(v[3:])
    return out


def overrides_of(args) -> list[str]:
    """The command line's suite overrides, ``--limit N`` first (so KEY=VALUE can refine it)."""
    limit = [f"training.{key}={args.limit}" for key in
             ("max_train_samples", "max_val_samples", "max_eval_samples")] if args.limit else []
    return [*limit, *args.overrides]


def plugin_manager(args, extra_files=()):
    from compressbench.plugins import get_plugin_manager, unknown_blocked
    blocked = blocked_names(args.blocked)
    files = [*args.plugin, *extra_files]
    unknown = unknown_blocked(blocked, files)
    if unknown:
        raise CompressBenchError(f"-p no:{unknown[0]}: no installed plugin or plugin file is "
                                 f"named '{unknown[0]}' (`compressbench plugins` lists them)")
    return get_plugin_manager(files, blocked)


def data_dir_of(args) -> Path | None:
    """--data-dir, else $COMPRESSBENCH_DATA_DIR, else None (the Hub)."""
    if args.data_dir:
        return args.data_dir
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None


def cmd_run(args) -> int:
    from compressbench import session
    from compressbench.suite import load_suite

    suite = load_suite(args.suite, overrides_of(args), args.suite_dir)
    pm = plugin_manager(args, suite.plugins)
    run_dir = args.output or Path("runs") / suite.name
    start = time.time()
    try:
        results = session.run(suite, data_dir_of(args), run_dir, None, args.cache_dir,
                              args.executor, args.workers, args.threads, args.ray_address,
                              register=[ConsoleProgress()], within=args.within, report=None,
                              pm=pm, track=[t for t in args.track.split(",") if t.strip()])
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished jobs are saved in {run_dir}; run the same command "
              f"again to resume", file=sys.stderr)
        return 130
    latest = results.records()
    failed = [r for r in latest if not r.ok]
    print(f"[compressbench] {len(latest) - len(failed)} jobs ok, {len(failed)} failed, "
          f"{time.time() - start:.0f}s; results in {run_dir / 'results.jsonl'}", file=sys.stderr)
    if not args.no_report:
        for path in results.report(["md", "html"], args.latency_budget, args.examples):
            if path.suffix in (".md", ".html"):
                print(path)
    return 1 if failed else 0


def cmd_report(args) -> int:
    from compressbench import session
    pm = plugin_manager(args)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    data_dir = data_dir_of(args)
    if data_dir is not None:  # runs from before references/ were saved
        from compressbench.runner import rebuild_references
        rebuild_references(args.run_dir, pm, data_dir)
    results = session.Results(Path(args.run_dir), within=args.within, _pm=pm)
    for path in results.report(formats, args.latency_budget, args.examples, args.grid):
        print(path)
    return 0


def cmd_compare(args) -> int:
    from compressbench import compare, session
    runs = list(args.runs)
    if args.db is not None:
        from compressbench import store
        if not args.suite:
            raise CompressBenchError("--db: name the suite to compare with --suite NAME")
        runs += [r for r in store.run_dirs(args.db, args.suite) if r not in runs]
    names = "-".join(compare.unique_names(runs)) if runs else "runs"
    out = args.output or Path("runs") / f"compare-{names}"[:80]
    compare.merge(runs, out, args.force)
    results = session.Results(out, within=args.within, _pm=plugin_manager(args))
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    for path in results.report(formats, args.latency_budget, args.examples):
        print(path)
    return 0


def cmd_index(args) -> int:
    from compressbench import store
    found = store.index(args.paths, args.db)
    print(f"{args.db}: {found} run directories indexed")
    return 0


def cmd_validate(args) -> int:
    from compressbench.models import resolve_model_ref
    from compressbench.preflight import preflight
    from compressbench.suite import load_suite

    suite = load_suite(args.suite, overrides_of(args), args.suite_dir)
    pm = plugin_manager(args, suite.plugins)
    for i, task in enumerate(suite.tasks):
        if not isinstance(task, str):
            for key in ("train", "dev", "validation"):
                rel = getattr(task, key)
                if rel and not (suite.base / rel).is_file():
                    raise CompressBenchError(
                        f"{suite.path}: tasks[{i}].{key}: file {suite.base / rel} not "
                        f"found (paths are relative to the suite)")
    data_dir = data_dir_of(args)
    teacher = resolve_model_ref(suite.teacher.model, suite.base)
    prepared, notes = preflight(suite, pm, data_dir, teacher, prepare=not args.no_data,
                                skip_hub=True)
    from compressbench import power

    notes += power.notes(suite, power.reported_sizes(prepared),
                         args.previous or Path("runs") / suite.name, args.within)
    for note in notes + (["--no-data: the data files were not read"] if args.no_data else []):
        print(f"note: {note}")
    n_jobs = len(suite.tasks) * (1 + sum(len(m.seeds_in(suite)) for m in suite.methods))
    n_own = sum(m.seeds is not None for m in suite.methods)
    own = f" ({n_own} entries with their own)" if n_own else ""
    sizes = ", ".join(f"{name} {len(d.train)}/{len(d.val)}/"
                      f"{'+'.join(str(len(e)) for e in d.evals.values())}"
                      for name, d in prepared.items())
    print(f"{suite.path}: ok ({len(suite.tasks)} tasks, {len(suite.methods)} methods, "
          f"{len(suite.seeds)} seeds{own}, {n_jobs} jobs)" +
          (f"; examples train/validation/reported: {sizes}" if sizes else ""))
    return 0


def cmd_export(args) -> int:
    from compressbench.export import export
    plugin_manager(args)  # --plugin files whose rebuild steps a model's recipe may name
    out = export(args.run_dir, args.task, args.method, args.output, args.seed, args.force,
                 args.unsafe_load_pickle, args.format)
    print(out)
    if args.push_to_hub:
        from compressbench.export import push_to_hub
        print(push_to_hub(out, args.push_to_hub, private=args.private))
    return 0


def cmd_plugins(args) -> int:
    from compressbench.plugins import describe, describe_method
    pm = plugin_manager(args)
    if args.method:
        print(describe_method(pm.methods.get(args.method, "--method")))
        return 0
    rows = describe(pm)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        digest = f"  code {row['digest']}" if row["digest"] else ""
        print(f"{row['name']} {row['version']}  [{row['source']}]{digest}")
        print(f"    hooks: {', '.join(row['hooks']) or '-'}")
        if row["registered"]:
            print(f"    registered: {', '.join(row['registered'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from compressbench.logs import quiet_logs

    quiet_logs()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow options (argparse gives a positional list only the
    # words before the first option)
    if extra and hasattr(args, "overrides") and all(
            "=" in x and not x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler = {"run": cmd_run, "report": cmd_report, "validate": cmd_validate,
               "plugins": cmd_plugins, "export": cmd_export, "compare": cmd_compare,
               "index": cmd_index}[args.command]
    try:
        return handler(args)
    except CompressBenchError as exc:
        if args.traceback:
            raise
        print(f"compressbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
