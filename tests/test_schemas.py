"""The documented layouts: every record compressbench writes, and report.json, validate against
the JSON Schema files shipped in the package; a record that breaks them does not."""
from __future__ import annotations

import json

import pytest

from compressbench.record import Record, schema_path
from tests.conftest import REPO

jsonschema = pytest.importorskip("jsonschema")


def validator(name: str):
    schema = json.loads(schema_path(name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_stored_sample_records_validate_as_written_now():
    check = validator("result-record")
    lines = (REPO / "reports" / "glue-sample" / "results.jsonl").read_text().splitlines()
    for line in lines:  # older layouts as compressbench writes them after migrating
        check.validate(Record.from_dict(json.loads(line)).to_dict() | {"schema": 3})


def test_a_fresh_run_and_its_report_json_validate(tmp_path, tiny_teacher):
    from compressbench.cli import main
    from tests.conftest import make_data_dir, write
    data = make_data_dir(tmp_path / "data")
    suite = write(tmp_path / "s.yaml", f"""version: 1
teacher: {{model: {tiny_teacher}, training: {{epochs: 1}}}}
tasks: [sst2]
methods: [{{name: kd, student: {{layers: 1}}}}, {{name: quant-dynamic, label: int8}}]
training: {{epochs: 1, batch_size: 8, max_seq_length: 32, max_val_samples: 8}}
measure: {{latency_samples: 2, warmup: 1, throughput_samples: 2}}
""")
    run = tmp_path / "run"
    assert main(["run", str(suite), "--data-dir", str(data), "--output", str(run),
                 "--cache-dir", str(tmp_path / "cache"), "--no-report"]) == 0
    check = validator("result-record")
    lines = (run / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        check.validate(json.loads(line))  # exactly as written
    assert main(["report", str(run), "--format", "json"]) == 0
    report = json.loads((run / "report.json").read_text())
    validator("report").validate(report)
    assert report["schema_version"] == 1


def test_a_record_that_breaks_the_layout_is_refused():
    check = validator("result-record")
    good = {"schema": 3, "job_id": "sst2/m/seed1", "task": "sst2", "label": "m", "seed": 1,
            "status": "failed", "error": "boom"}
    check.validate(good)
    for bad in ({**good, "seed": "1"}, {**good, "status": "done"},
                {k: v for k, v in good.items() if k != "error"},
                {**good, "status": "ok"}):  # ok needs metrics, score, main_metric, model
        with pytest.raises(jsonschema.ValidationError):
            check.validate(bad)
