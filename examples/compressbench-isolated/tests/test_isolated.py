"""The example executor's own tests: it registers, checks its option, and gives the records an
inline run gives (every job in a fresh process, two at once)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from compressbench import api

POS = ["a gripping , funny and moving film", "wonderful acting and a clever script",
       "warm , witty and beautifully shot", "i loved it"]
NEG = ["a dull , lifeless mess", "boring and far too long", "flat characters", "i hated it"]


def setup(tmp: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(tmp / "teacher")
    AutoTokenizer.from_pretrained(api.resolve_model_ref("embedded")).save_pretrained(
        tmp / "teacher")
    for split, n in (("train", 40), ("dev", 12)):
        rows = ["sentence\tlabel"] + [f"{POS[i % 4]}\t1" if i % 2 else f"{NEG[i % 4]}\t0"
                                      for i in range(n)]
        path = tmp / "data" / "glue" / "SST-2" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")
    suite = tmp / "suite.yaml"
    suite.write_text(f"""version: 1
name: isolated-example
teacher: {{model: {tmp / 'teacher'}, training: {{epochs: 1}}}}
tasks: [sst2]
methods:
  - {{name: finetune, label: small, student: {{layers: 1}}}}
  - {{name: kd, student: {{layers: 1}}}}
training: {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_val_samples: 8}}
measure: {{latency_samples: 4, warmup: 1, throughput_samples: 4}}
""")
    return suite


def cli(*args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, "-m", "compressbench", *args],
                          capture_output=True, text=True, env=env)


def test_registers_through_its_entry_point():
    assert api.get_plugin_manager().executors.owners["isolated"] == "isolated"


def test_its_option_is_checked_with_the_key_named(tmp_path):
    suite = setup(tmp_path)
    text = suite.read_text().replace("version: 1\n", "version: 1\nexecution: {executor: "
                                     "isolated, start_metod: spawn}\n")
    suite.write_text(text)
    out = cli("validate", str(suite), "--data-dir", str(tmp_path / "data"))
    assert out.returncode != 0
    assert "execution: unknown key 'start_metod'. Did you mean: start_method?" in out.stderr
    suite.write_text(text.replace("start_metod: spawn", "start_method: fork"))
    out = cli("validate", str(suite), "--data-dir", str(tmp_path / "data"))
    assert "start_method: 'fork' is not spawn or forkserver" in out.stderr


def test_every_job_in_a_fresh_process_gives_the_inline_records(tmp_path):
    suite = setup(tmp_path)
    runs = {}
    for name, extra in (("inline", ["--executor", "inline"]),
                        ("isolated", ["--executor", "isolated", "--workers", "2",
                                      "--threads", "1"])):
        out = cli("run", str(suite), "--data-dir", str(tmp_path / "data"), "--output",
                  str(tmp_path / name), "--cache-dir", str(tmp_path / f"cache-{name}"),
                  "--no-report", *extra, threads=1)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = {r["job_id"]: r for r in map(
            json.loads, (tmp_path / name / "results.jsonl").read_text().splitlines())}
    inline, isolated = runs["inline"], runs["isolated"]
    assert sorted(inline) == sorted(isolated) and len(inline) == 3
    for job_id, record in isolated.items():
        assert record["status"] == "ok", record.get("error")
        assert record["metrics"] == inline[job_id]["metrics"], job_id  # exactly
        assert record["quiet"]["paused_s"] >= 0  # each process joined the run's turnstile
