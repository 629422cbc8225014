"""One Record, written and read (issue 23): every saved run's records type and serialise back
to the same JSON, old layouts migrate on read, and the writers go through
the same class."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressbench import results
from compressbench.errors import CompressBenchError
from compressbench.record import SCHEMA, BackendResult, Record

ROOT = Path(__file__).resolve().parents[1]
RUNS = [ROOT / "reports" / "glue-sample" / "results.jsonl",
        ROOT / "tests" / "data" / "report-run" / "results.jsonl"]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.parent.name)
def test_saved_records_round_trip_through_the_dataclass(path):
    for d in lines(path):
        r = Record.from_dict(d)
        out = r.to_dict()
        assert out["schema"] == SCHEMA
        assert Record.from_dict(out) == r  # typed -> JSON -> typed: nothing lost
        if "backends" in (d.get("measure") or {"backends": 1}):  # the current layout
            if "schema" not in d:  # written before the key itself (layout 2)
                out.pop("schema")
            assert out == d  # the same keys (null and empty ones too) and values


def test_a_compressbench_0_2_measurement_is_migrated_to_a_torch_backend():
    old = next(d for d in lines(RUNS[1]) if d.get("measure"))
    assert "backends" not in old["measure"]
    r = Record.from_dict(old)
    (name,) = r.backends
    torch = r.backend(name)
    assert name == "torch" and torch.latency_ms.p50 == old["measure"]["latency_ms"]["p50"]
    written = r.to_dict()["measure"]
    assert written["backends"]["torch"]["latency_ms"]["p50"] == torch.latency_ms.p50
    assert written.get("settings") == old["measure"].get("settings")


def test_unknown_keys_are_kept_and_written_back():
    d = {"job_id": "t/a/seed1", "task": "t", "status": "ok", "from_the_future": {"x": 1},
         "measure": {"backends": {"torch": {"status": "ok", "new_number": 3.5}}}}
    r = Record.from_dict(d)
    assert r.extra == {"from_the_future": {"x": 1}}
    assert r.backend("torch").extra == {"new_number": 3.5}
    out = r.to_dict()
    assert out["from_the_future"] == {"x": 1}
    assert out["measure"]["backends"]["torch"]["new_number"] == 3.5


def test_results_append_writes_the_record_and_types_a_dict_first(tmp_path):
    r = Record(job_id="t/a/seed1", task="t", label="a", seed=1, status="ok", key="k",
               metrics={"accuracy": 0.5}, score=0.5, main_metric="accuracy")
    results.append(tmp_path, r)
    results.append(tmp_path, {"job_id": "t/b/seed1", "task": "t", "label": "b", "key": "k2",
                              "status": "failed"})
    first, second = results.read(tmp_path)
    assert Record.from_dict(first) == r and first["schema"] == SCHEMA
    assert second["schema"] == SCHEMA and second["status"] == "failed"
    for bad in ({"status": "ok"}, {"job_id": "t/c/seed1", "task": "t", "status": "ok"}):
        with pytest.raises(CompressBenchError, match="not writing a malformed record"):
            results.append(tmp_path, bad)  # what read() would set aside is never written
    assert len(results.read(tmp_path)) == 2


def test_a_backend_result_reads_its_numbers_by_their_json_names():
    b = BackendResult.from_dict("onnxruntime", {
        "status": "ok", "latency_ms": {"n": 2, "p50": 1.5, "p90": 2.0, "p99": 2.0, "mean": 1.6,
                                       "stdev": 0.1, "min": 1.0, "max": 2.0},
        "throughput": {"examples_per_s": 40.0, "batch_size": 8},
        "memory_mb": {"peak_rss": 300.0, "model_rss": 20.0}})
    assert (b.latency_ms.p50, b.examples_per_s, b.peak_rss_mb, b.model_rss_mb) == \
        (1.5, 40.0, 300.0, 20.0)
    assert BackendResult.from_dict("onnxruntime", b.to_dict()) == b
