"""The Python API (``compressbench.run`` / ``compressbench.load`` / ``Results``), used as the
README shows it: no plugin manager, a dict of overrides, a data frame back."""
from __future__ import annotations

import pytest

import compressbench
from compressbench.errors import CompressBenchError
from tests.conftest import make_data_dir, write


@pytest.fixture(scope="module")
def session_run(tiny_teacher, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("session")
    data = make_data_dir(tmp / "data")
    suite = write(tmp / "suite.yaml", f"""version: 1
name: api
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods:
  - {{name: finetune, label: small, student: {{layers: 1}}}}
  - {{name: kd, student: {{layers: 1}}}}
seeds: [1, 2, 3]
training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_val_samples: 8}}
measure: {{latency_samples: 2, warmup: 1, throughput_samples: 2}}
""")
    results = compressbench.run(suite, data_dir=data, output=tmp / "run",
                                cache_dir=tmp / "cache", overrides={"seeds": [1, 2]})
    return tmp, results


def test_run_applies_overrides_and_returns_results_with_a_report(session_run):
    tmp, results = session_run
    records = results.records()
    assert {r.seed for r in records if r.label != "teacher"} == {1, 2}  # the override
    assert "with command-line overrides" in (tmp / "run" / "suite.yaml").read_text()
    assert (tmp / "run" / "report.md").is_file() and (tmp / "run" / "report.html").is_file()


def test_to_dataframe_is_one_row_per_model_and_backend(session_run):
    tmp, _ = session_run
    df = compressbench.load(tmp / "run").to_dataframe()
    assert sorted(df["method"]) == ["kd", "small", "teacher"]  # measured on torch only
    assert set(df["backend"]) == {"torch"}
    kd = df[df["method"] == "kd"].iloc[0]
    assert kd["n_seeds"] == 2 and kd["baseline"] == "small" and kd["p50_ms"] > 0
    for column in ("score", "score_ci_low", "vs_teacher_diff", "vs_baseline_verdict",
                   "parameters", "speedup"):
        assert column in df.columns, column


def test_best_and_report_from_a_loaded_run(session_run):
    tmp, _ = session_run
    results = compressbench.load(tmp / "run")
    picks = results.best(latency_budget=1e6)
    assert picks and all(p["task"] == "sst2" for p in picks)
    assert {"question", "method", "backend", "score", "why"} <= set(picks[0])
    assert [p.name for p in results.report(["csv"])] == ["report.csv"]


def test_load_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(CompressBenchError, match="not a run directory"):
        compressbench.load(tmp_path)
