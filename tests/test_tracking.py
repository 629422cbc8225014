"""Experiment tracking through the hooks (``--track``): TensorBoard event files and a local
MLflow store, each read back offline with its own library."""
from __future__ import annotations

import pytest

from compressbench.cli import main
from compressbench.errors import ConfigError
from tests.conftest import make_data_dir, write


def tiny_run(tmp_path, teacher, track: str) -> tuple:
    data = make_data_dir(tmp_path / "data")
    suite = write(tmp_path / "s.yaml", f"""version: 1
name: tracked
teacher: {{model: {teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods: [{{name: kd, student: {{layers: 1}}}}]
training: {{epochs: 2, batch_size: 2, max_seq_length: 32, max_val_samples: 8}}
measure: {{latency_samples: 2, warmup: 1, throughput_samples: 2}}
""")
    run = tmp_path / "run"
    assert main(["run", str(suite), "--data-dir", str(data), "--output", str(run),
                 "--cache-dir", str(tmp_path / "cache"), "--no-report", "--track", track]) == 0
    return run


def test_tensorboard_gets_loss_curves_validation_and_final_numbers(tmp_path, tiny_teacher):
    pytest.importorskip("tensorboard", reason="pip install 'compressbench[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tiny_run(tmp_path, tiny_teacher, "tensorboard")
    acc = EventAccumulator(str(run / "tensorboard" / "sst2__kd__seed42")).Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "validation/accuracy", "metric/accuracy",
            "latency/torch/p50_ms", "model/parameters"} <= tags
    assert len(acc.Scalars("validation/accuracy")) == 2  # one per epoch
    assert {e.step for e in acc.Scalars("train/loss")} >= {50}  # every 50 steps
    import json
    record = json.loads((run / "results.jsonl").read_text().splitlines()[-1])
    assert acc.Scalars("metric/accuracy")[0].value == pytest.approx(record["metrics"]["accuracy"])


def test_mlflow_gets_one_run_per_job_with_params_curves_and_numbers(tmp_path, tiny_teacher):
    pytest.importorskip("mlflow", reason="pip install 'compressbench[mlflow]'")
    from mlflow.tracking import MlflowClient
    run = tiny_run(tmp_path, tiny_teacher, "mlflow")
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tracked")
    runs = {r.data.tags["job_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"sst2/teacher/seed42", "sst2/kd/seed42"}
    kd = runs["sst2/kd/seed42"]
    assert kd.info.status == "FINISHED" and kd.data.params["step0.kd.student.layers"] == "1"
    assert {"train_loss", "val_accuracy", "metric_accuracy", "latency_torch_p50_ms"} <= \
        set(kd.data.metrics)
    history = client.get_metric_history(kd.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]


def test_an_unknown_tracker_is_named(tmp_path, tiny_teacher):
    from compressbench.tracking import trackers
    with pytest.raises(ConfigError, match="--track tensorbord: unknown tracker. Did you mean: "
                                          "tensorboard"):
        trackers(["tensorbord"])
