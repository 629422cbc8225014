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


class StandInHub:
    """A local stand-in for huggingface_hub.HfApi: what would be uploaded lands in a folder."""

    root = None
    calls: list = []

    def create_repo(self, repo_id, repo_type, private, exist_ok):
        self.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
        import shutil
        self.calls.append(("upload_folder", repo_id))
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)


def test_export_pushes_to_the_hub_only_when_asked(session_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from compressbench.cli import main
    tmp, _ = session_run
    StandInHub.root, StandInHub.calls = tmp_path / "hub", []
    monkeypatch.setattr(huggingface_hub, "HfApi", StandInHub)  # never the network
    args = ["export", str(tmp / "run"), "--task", "sst2", "--method", "kd", "--seed", "1"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    assert StandInHub.calls == []  # no flag, no upload
    assert main(args + ["-o", str(tmp_path / "b"), "--push-to-hub", "me/kd-tiny"]) == 0
    assert StandInHub.calls == [("create_repo", "me/kd-tiny", "model", False, True),
                                ("upload_folder", "me/kd-tiny")]
    pushed = {p.name for p in (tmp_path / "hub" / "me" / "kd-tiny").iterdir()}
    assert {"README.md", "config.json", "model.safetensors"} <= pushed
    assert "https://huggingface.co/me/kd-tiny" in capsys.readouterr().out
    assert main(args + ["-o", str(tmp_path / "c"), "--push-to-hub", "not a repo"]) == 2
    assert "expected OWNER/NAME" in capsys.readouterr().err

    def refuse(self, **kwargs):
        raise RuntimeError("401 Client Error: Unauthorized\nmore lines")
    monkeypatch.setattr(StandInHub, "upload_folder", refuse)
    assert main(args + ["-o", str(tmp_path / "d"), "--push-to-hub", "me/kd-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "401 Client Error: Unauthorized" in err
