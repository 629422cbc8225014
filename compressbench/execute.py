"""One job, in any process: build (or load from the cache) its model, evaluate and measure it,
and return its record. The runner appends the record; nothing here writes ``results.jsonl``.

A :class:`Workspace` is everything a process needs besides the job, as plain data (the suite,
the plugin files and blocked plugin names, the data, cache and run directories), so a worker
process, or a Ray task on another machine, builds its own plugin manager, data and tokenizer
from it once (:class:`Worker`) and then runs jobs with :func:`execute`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import random
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compressbench import cache, models, rundir, safefs, schema
from compressbench import data as D
from compressbench.errors import CompressBenchError
from compressbench.measure import measure_model
from compressbench.measure.stats import model_stats
from compressbench.method import Context
from compressbench.plan import Job, Planned, resolve_task
from compressbench.record import Record
from compressbench.suite import Suite
from compressbench.tasks import Task
from compressbench.training import set_seed

#: emit(job, event, data): a job's progress, forwarded to the ``job_event`` hook
Emit = Callable[[Job, str, dict], None]


@dataclass(frozen=True)
class Workspace:
    """Where jobs run, as data: what every worker needs to rebuild the runner's state."""

    suite: Suite
    teacher_ref: str
    run_dir: Path
    cache_dir: Path
    data_dir: Path | None = None
    plugin_files: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)  # the run's environment.json


class Prepared:
    """One task's data in a worker: examples, features, tokenized once per process."""

    def __init__(self, task: Task, data: D.TaskData, tokenizer, max_len: int):
        self.task, self.data = task, data
        self.feats = {"train": D.encode(task, tokenizer, data.train, max_len),
                      "val": D.encode(task, tokenizer, data.val, max_len)}
        for split, exs in data.evals.items():
            self.feats[split] = D.encode(task, tokenizer, exs, max_len)


class Worker:
    """A process's state for running jobs: the plugin manager, the tokenizer and each task's
    data, made once and reused across jobs."""

    def __init__(self, ws: Workspace, pm=None, prepared: dict | None = None,
                 threads: Callable[[], int] | None = None, turnstile=None):
        """``threads``: the torch threads a job trains with, re-read every step (None:
        torch's own); ``turnstile``: a :class:`compressbench.quiet.Turnstile` when other
        workers of the run compute on this machine (None: nothing else does)."""
        from compressbench.plugins import get_plugin_manager

        self.ws = ws
        self.threads, self.turnstile = threads, turnstile
        self.pm = pm or get_plugin_manager(ws.plugin_files, ws.blocked)
        self.tokenizer = models.load_tokenizer(ws.teacher_ref)
        self.tasks: dict[str, Prepared] = {}
        self.data = dict(prepared or {})  # task name -> TaskData, already prepared

    @property
    def env(self) -> dict:
        """The environment the job's record names (the run's, unless a worker on another
        machine says otherwise)."""
        return self.ws.env

    @property
    def pause(self) -> Callable[[], None] | None:
        """Called between training steps and evaluation batches (None: nothing to wait for)."""
        return self.turnstile.pause_point if self.turnstile is not None else None

    def measure(self, folder: Path, features: list[dict], teacher: Path | None) -> dict:
        """Measure the saved model here: one measurement at a time, with every other worker of
        the run paused (:meth:`compressbench.quiet.Turnstile.measuring`)."""
        import contextlib

        quiet = self.turnstile.measuring() if self.turnstile is not None \
            else contextlib.nullcontext()
        with quiet:
            return measure_model(folder, features, self.ws.suite.measure, self.pm,
                                 self.pm.plugin_files, reference=teacher,
                                 baseline=teacher or folder, cache_dir=self.ws.cache_dir)

    def task(self, name: str) -> Prepared:
        """The suite's task ``name`` with its data, prepared once per worker."""
        if name not in self.tasks:
            suite = self.ws.suite
            item = next(t for t in suite.tasks if (t if isinstance(t, str) else t.name) == name)
            task = resolve_task(suite, item, self.pm)
            data = self.data.get(name) or D.prepare(task, self.ws.data_dir, suite.training)
            self.tasks[name] = Prepared(task, data, self.tokenizer,
                                        suite.training.max_seq_length)
        return self.tasks[name]


def execute(job: Job, worker: Worker, emit: Emit) -> Record:
    """Run ``job`` and return its :class:`~compressbench.record.Record` (``status`` ``ok`` or
    ``failed``: a method's error is recorded, never raised; Ctrl-C is)."""
    ws, suite = worker.ws, worker.ws.suite
    p = worker.task(job.task)
    task, data = p.task, p.data
    started = time.time()
    record = {"job_id": job.id, "key": job.key, "suite": suite.name,
              "suite_sha256": suite.sha256, "task": task.name, "label": job.label,
              "seed": job.seed, "teacher": suite.teacher.model,
              "steps": steps_of(job.steps, worker.pm), "main_metric": task.main_metric,
              "task_kind": task.kind.name,
              "data": {"train": len(data.train), "val": len(data.val),
                       "val_source": data.val_source, "fingerprint": data.fingerprint,
                       **{f"eval_{s}": len(e) for s, e in data.evals.items()}},
              "env": worker.env,
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    teacher = None if job.teacher_key is None else ws.cache_dir / "models" / job.teacher_key
    try:
        if teacher is not None and not models.is_saved(teacher):
            raise CompressBenchError(f"the teacher for task '{task.name}' is not available "
                                     f"(its job failed); fix that first")
        plans = [resolved(job, v, worker, teacher) for v in job.variants]
        if len(plans) == 1:
            folder, training_log = build(job, plans[0], worker, teacher, emit)
        else:  # a grid: build every setting, keep the best on validation
            grid, built = [], []
            for variant, plan in zip(job.variants, plans):
                built.append(build(job, plan, worker, teacher, emit))
                grid.append({"setting": variant.setting,
                             "val_score": validation_score(built[-1][0], p, suite,
                                                           worker.pause)})
            chosen = max(range(len(grid)), key=lambda i: (grid[i]["val_score"], -i))
            grid[chosen]["chosen"] = True
            folder, training_log = built[chosen]
            record["grid"] = grid
            record["setting"] = job.variants[chosen].setting
            record["steps"] = steps_of(job.variants[chosen].steps, worker.pm)
        record.update(assess(job, folder, p, worker, teacher))
        record["training"] = training_log
        record["cache_dir"] = str(folder)
        record["model_dir"] = keep_model(ws.run_dir, job, folder)
        record["status"] = "ok"
    except CompressBenchError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a method's bug: record it, carry on with the suite
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    record["wall_s"] = round(time.time() - started, 2)
    return Record.from_dict(record)


def steps_of(steps, pm) -> list[dict]:
    """Each step as its record keeps it, with the plugin that registered its method and the
    digest of that plugin's source files (the code that built the model)."""
    from compressbench.plugins import source_digest
    out = []
    for s in steps:
        method = pm.methods.get(s.method)
        out.append({"method": s.method, "params": s.params, "training": s.training,
                    "plugin": pm.methods.owners[s.method],
                    "version": str(getattr(method, "version", "1")),
                    "code": source_digest(method)})
    return out


def resolved(job: Job, variant, worker: Worker, teacher: Path | None) -> list[Planned]:
    """The variant's steps as the plan resolved them (parameters and training settings are
    not parsed again), with this process's methods. Each step's cache key is derived again
    here and must be the plan's: a worker with another version of a plugin, or other data,
    would build another model."""
    from compressbench.plan import base_key, step_key

    if teacher is None:
        p = worker.task(job.task)
        prev = base_key(worker.ws.teacher_ref, p.task, p.data.fingerprint,
                        worker.ws.suite.training.max_seq_length)
    else:
        prev = teacher.name
    plan = []
    for r in variant.resolved:
        method = worker.pm.methods.get(r.step.method)
        prev = step_key(prev, r.step.method, method, r.params, r.training, job.seed)
        if prev != r.key:
            raise CompressBenchError(
                f"{job.id}: this worker resolves the job to other cache keys than the plan "
                f"did: its plugins or data differ from the machine that planned the run (same "
                f"compressbench, plugins and data on every node)")
        plan.append(Planned(r.step, method, r.params, r.training, r.key))
    return plan


def build(job: Job, plan: list[Planned], worker: Worker, teacher: Path | None,
          emit: Emit) -> tuple[Path, list[dict]]:
    """Run (or load from cache) each step of the job; returns the final model's folder."""
    ws, p = worker.ws, worker.task(job.task)
    prev_folder = teacher
    log = []

    def on_event(event: str, info: dict) -> None:
        emit(job, event, info)

    for step, method, params, cfg, key in plan:
        folder = ws.cache_dir / "models" / key
        drop_if_damaged(folder, lambda info: on_event("cache_damaged", info))
        if models.is_saved(folder):
            on_event("cache_hit", {"key": key, "path": str(folder), "method": step.method})
            info = json.loads((folder / "train.json").read_text())
        else:
            with scratch(ws.cache_dir, key) as tmp:
                ctx = Context(
                    task=p.task, data=p.data, tokenizer=worker.tokenizer, features=p.feats,
                    training=cfg, seed=job.seed,
                    pretrained_ref=ws.teacher_ref, cache_dir=tmp, emit=on_event,
                    teacher_outputs_dir=None if teacher is None
                    else ws.cache_dir / "teacher-outputs" / teacher.name,
                    data_dir=ws.data_dir, threads=worker.threads, pause=worker.pause,
                    plugins=worker.pm, shared_dir=ws.cache_dir / "shared",
                    load_teacher=lambda: models.load_model(teacher),
                    load_input=(lambda f=prev_folder: models.load_model(f)) if prev_folder
                    else (lambda: models.load_model(teacher)))
                start = time.perf_counter()
                set_seed(job.seed)  # new heads and random students are initialised from it
                model = method.build(ctx, params)
                uses = getattr(method, "uses_teacher", None)
                info = {"method": step.method, "params": schema.as_dict(params),
                        "runs": ctx.train_results,
                        "build_s": round(time.perf_counter() - start, 2),
                        "student": ctx.student,
                        "settings": dataclasses.asdict(cfg),  # the step's training, resolved
                        "teacher_signal": bool(uses(params)) if callable(uses) else None}
                if ctx.transfer is not None:  # what the teacher labelled besides the labels
                    info["transfer"] = ctx.transfer
                models.save_model(model, folder, p.task.kind, worker.tokenizer)
                safefs.write_atomic(folder / "train.json", json.dumps(info, indent=2))
                cache.seal(folder)
        log.append(info)
        prev_folder = folder
    return prev_folder, log


@contextlib.contextmanager
def scratch(cache_dir: Path, key: str):
    """A folder a step's build may use, removed afterwards whatever happens (with the
    ``scratch/`` folder itself once no other build uses it)."""
    folder = cache_dir / "scratch" / key
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


def drop_if_damaged(folder: Path, report: Callable[[dict], None] | None = None) -> bool:
    """Remove a cached model whose files no longer match its manifest (so it is rebuilt),
    with a warning; returns whether it did."""
    if not folder.exists():
        return False
    problem = cache.check(folder)
    if problem is None:
        return False
    print(f"compressbench: warning: cached model {folder} is damaged ({problem}); "
          f"rebuilding it", file=sys.stderr)
    if report is not None:
        report({"path": str(folder), "problem": problem})
    shutil.rmtree(folder, ignore_errors=True)
    return True


def keep_model(run_dir: Path, job: Job, folder: Path) -> str:
    """Put the job's model in the run directory (hard links to the cache where possible);
    returns its path relative to the run directory."""
    target = rundir.model_dir(run_dir, job.id)
    models.copy_model(folder, target)
    return target.relative_to(Path(run_dir).resolve()).as_posix()


def validation_score(folder: Path, p: Prepared, suite: Suite,
                     pause: Callable[[], None] | None = None) -> float:
    """The main metric of a saved model on the held-out validation split."""
    from compressbench.training import evaluate

    model = models.load_model(folder)
    return evaluate(model, p.task, p.data.val, p.feats["val"], suite.training.eval_batch_size,
                    D.pad_id_of(model), pause)[p.task.main_metric]


def timing_sample(p: Prepared) -> list[dict]:
    """The examples every model of a task is timed on: the first reported split, shuffled
    with a fixed seed (the same examples, in the same order, for all)."""
    sample = p.feats[p.task.eval_splits[0]]
    order = list(range(len(sample)))
    random.Random(0).shuffle(order)
    return [sample[i] for i in order]


def assess(job: Job, folder: Path, p: Prepared, worker: Worker,
           teacher: Path | None) -> dict:
    """Evaluate the saved model on the reported split(s) and measure it (with a paired
    speed-up against the teacher, for every model but the teacher)."""
    from compressbench.training import predict

    suite, task, data, feats = worker.ws.suite, p.task, p.data, p.feats
    model = models.load_model(folder)
    metrics, predictions = {}, {}
    multi = len(task.eval_splits) > 1
    for split in task.eval_splits:
        preds = predict(model, task, feats[split], suite.training.eval_batch_size,
                        D.pad_id_of(model), worker.pause)
        predictions[split] = preds
        for name, value in task.score(data.evals[split], preds).items():
            metrics[f"{name}_{split}" if multi else name] = value
    pred_file = rundir.predictions_file(worker.ws.run_dir, job.id)
    safefs.write_atomic(pred_file, json.dumps(predictions))
    out = {"metrics": metrics, "score": metrics[task.main_metric],
           "model": model_stats(model, folder)}
    del model
    if suite.measure.enabled:
        out["measure"] = worker.measure(folder, timing_sample(p), teacher)
    return out
