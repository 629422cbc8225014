"""The example runtime's own tests: it registers, checks its setting, and measures the teacher
with the setting it was given, its outputs compared with PyTorch fp32's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from compressbench import api

POS = ["a gripping , funny and moving film", "wonderful acting", "i loved it"]
NEG = ["a dull , lifeless mess", "boring and far too long", "i hated it"]


def setup(tmp: Path, backend: str) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(tmp / "teacher")
    AutoTokenizer.from_pretrained(api.resolve_model_ref("embedded")).save_pretrained(
        tmp / "teacher")
    for split, n in (("train", 24), ("dev", 8)):
        rows = ["sentence\tlabel"] + [f"{POS[i % 3]}\t1" if i % 2 else f"{NEG[i % 3]}\t0"
                                      for i in range(n)]
        path = tmp / "data" / "glue" / "SST-2" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")
    suite = tmp / "suite.yaml"
    suite.write_text(f"""version: 1
teacher: {{model: {tmp / 'teacher'}, training: {{epochs: 1}}}}
tasks: [sst2]
methods: [quant-dynamic]
training: {{batch_size: 8, max_seq_length: 32, max_val_samples: 4}}
measure: {{latency_samples: 4, warmup: 1, throughput_samples: 4, throughput_batch_size: 2,
          backends: [torch, {backend}]}}
""")
    return suite


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressbench", *args],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_registers_through_its_entry_point():
    assert api.get_plugin_manager().backends.owners["torch-autocast"] == "autocast"


def test_its_setting_is_checked_with_the_key_named(tmp_path):
    suite = setup(tmp_path, "{torch-autocast: {dtype: int8}}")
    out = cli("validate", str(suite), "--data-dir", str(tmp_path / "data"))
    assert out.returncode != 0
    assert "measure.backends.torch-autocast: dtype: 'int8' is not bfloat16 or float16" \
        in out.stderr, out.stderr


def test_measures_with_its_setting_and_is_compared_with_fp32(tmp_path):
    suite = setup(tmp_path, "{torch-autocast: {dtype: bfloat16}}")
    out = cli("run", str(suite), "--data-dir", str(tmp_path / "data"), "--output",
              str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-report")
    assert out.returncode == 0, out.stderr[-3000:]
    records = map(json.loads, (tmp_path / "run" / "results.jsonl").read_text().splitlines())
    record = next(r for r in records if r["label"] == "teacher")
    result = record["measure"]["backends"]["torch-autocast"]
    assert result["status"] == "ok", result
    assert result["options"] == {"dtype": "bfloat16"} and result["prepare"] == \
        {"dtype": "bfloat16"}
    assert result["agreement"]["examples"] > 0  # compared with PyTorch fp32 on dev examples
    assert 0 < result["agreement"]["max_abs_logit_diff"] < 1  # bf16 rounding, not garbage
    assert result["vs_eager"]["speedup"] > 0
