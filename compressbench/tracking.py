"""Experiment tracking through the lifecycle hooks: TensorBoard and MLflow.

Each tracker is a plugin object of the job hooks (no method knows it exists): training steps
(every 50 steps: the loss and each loss term, the learning rate), validation scores, and at the
end of each job its metrics, model size and measurements per backend. Turn them on with
``compressbench run SUITE --track tensorboard,mlflow`` or ``compressbench.run(...,
track=["mlflow"])``; they write into the run directory, offline:

- ``tensorboard``: ``RUN_DIR/tensorboard/<task>__<label>__seed<N>/`` event files
  (``tensorboard --logdir RUN_DIR/tensorboard``); needs ``compressbench[tensorboard]``.
- ``mlflow``: a local MLflow store ``RUN_DIR/mlruns``, one experiment per suite and one MLflow
  run per job with its parameters, tags, per-step loss curves and final numbers
  (``mlflow ui --backend-store-uri RUN_DIR/mlruns``); needs ``compressbench[mlflow]``.
"""
from __future__ import annotations

import json
from pathlib import Path

from compressbench.errors import require
from compressbench.hookspecs import hookimpl


def flat(prefix: str, value, out: dict) -> dict:
    """Nested parameters as ``a.b.c`` keys with scalar values (JSON for the rest)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list | tuple):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value
    return out


def final_numbers(record) -> dict[str, float]:
    """A finished job's numbers: metrics, size, and per backend p50 and speed-up."""
    out: dict[str, float] = {}
    for name, value in record.metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[f"metric/{name}"] = float(value)
    if record.model is not None:
        out["model/parameters"] = float(record.model.parameters or 0)
        if record.model.size_bytes:
            out["model/size_mb"] = record.model.size_bytes / 1e6
    for name, b in record.backends.items():
        if b.ok and b.latency_ms is not None:
            out[f"latency/{name}/p50_ms"] = float(b.latency_ms.p50)
            if b.vs_eager is not None:
                out[f"latency/{name}/speedup_vs_eager"] = float(b.vs_eager.speedup)
    if record.wall_s is not None:
        out["job/wall_s"] = float(record.wall_s)
    return out


def step_scalars(data: dict):
    """(name, value) of a ``train_step`` event's numbers: the loss, each term, the rate."""
    for key, value in data.items():
        if key not in ("step", "epoch") and isinstance(value, int | float):
            yield key, float(value)


def slug(job_id: str) -> str:
    return job_id.replace("/", "__")


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, logdir: str | Path | None = None):
        require("torch.utils.tensorboard", "tensorboard")
        self.logdir, self.writers, self.epoch_steps = logdir, {}, {}

    @hookimpl
    def run_started(self, suite, run_dir):
        self.logdir = Path(self.logdir or Path(run_dir) / "tensorboard")

    def writer(self, job):
        from torch.utils.tensorboard import SummaryWriter

        if job.id not in self.writers:
            self.writers[job.id] = SummaryWriter(str(Path(self.logdir) / slug(job.id)))
        return self.writers[job.id]

    @hookimpl
    def job_event(self, job, event, data):
        if event == "train_step":
            w = self.writer(job)
            for key, value in step_scalars(data):
                w.add_scalar(f"train/{key}", value, data["step"])
        elif event == "validation":
            self.writer(job).add_scalar(f"validation/{data['metric']}", data["value"],
                                        data["epoch"])

    @hookimpl
    def job_finished(self, job, record):
        w = self.writer(job)
        for key, value in final_numbers(record).items():
            w.add_scalar(key, value, 0)
        w.add_text("steps", json.dumps([dict(s) for s in record.steps], default=str))
        w.close()
        self.writers.pop(job.id, None)


class MlflowTracker:
    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None):
        require("mlflow", "mlflow")
        self.uri, self.client, self.experiment, self.runs = tracking_uri, None, None, {}

    @hookimpl
    def run_started(self, suite, run_dir):
        from mlflow.tracking import MlflowClient

        self.uri = self.uri or (Path(run_dir).resolve() / "mlruns").as_uri()
        if self.uri.startswith("file:"):
            import os

            # MLflow 3 keeps its file store only on request (a database backend needs the full
            # mlflow package)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(suite.name)
        self.experiment = (found.experiment_id if found is not None
                           else self.client.create_experiment(suite.name))

    def run_id(self, job) -> str:
        if job.id not in self.runs:
            run = self.client.create_run(self.experiment, run_name=job.id,
                                         tags={"task": job.task, "label": job.label,
                                               "seed": str(job.seed), "job_id": job.id})
            self.runs[job.id] = run.info.run_id
        return self.runs[job.id]

    @hookimpl
    def job_started(self, job):
        self.run_id(job)

    @hookimpl
    def job_event(self, job, event, data):
        if event == "train_step":
            rid = self.run_id(job)
            for key, value in step_scalars(data):
                self.client.log_metric(rid, f"train_{key}", value, step=data["step"])
        elif event == "validation":
            self.client.log_metric(self.run_id(job), f"val_{data['metric']}",
                                   float(data["value"]), step=int(data["epoch"]))

    @hookimpl
    def job_finished(self, job, record):
        rid = self.run_id(job)
        params = {}
        for i, step in enumerate(record.steps):
            flat(f"step{i}.{step.get('method')}", step.get("params") or {}, params)
            flat(f"step{i}.training", step.get("training") or {}, params)
        for key, value in list(params.items())[:200]:
            self.client.log_param(rid, key[:250], str(value)[:500])
        for key, value in final_numbers(record).items():
            self.client.log_metric(rid, key.replace("/", "_"), value)
        self.client.set_tag(rid, "status", record.status)
        self.client.set_terminated(rid, "FINISHED" if record.ok else "FAILED")
        self.runs.pop(job.id, None)


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}


def trackers(names) -> list:
    """Tracker objects for ``names`` (``--track``), each checking that its extra is installed."""
    from compressbench.errors import ConfigError, did_you_mean

    out = []
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--track {name}: unknown tracker.{did_you_mean(name, TRACKERS)} "
                              f"Available: {', '.join(TRACKERS)}")
        out.append(TRACKERS[name]())
    return out
