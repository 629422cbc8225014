"""Every built-in training method in mixed precision through the real runner: on the CPU (bf16)
everywhere, and on a CUDA GPU (bf16, fp16) where there is one. CI has none; on a GPU machine:

    pytest tests/test_devices.py tests/test_training.py -k "cuda or device or precision"
"""
from __future__ import annotations

import pytest
import torch

from compressbench.plugins import get_plugin_manager
from compressbench.runner import run_suite
from compressbench.suite import load_suite
from tests.conftest import suite_file

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (none here; run on a GPU machine)")

METHODS = """  - {name: finetune, label: small, student: {layers: 1}}
  - {name: kd, label: kd, student: {layers: 1}}
  - {name: distilbert, label: distilbert}
  - {name: pkd-skip, label: pkd, beta: 10}
  - {name: tinybert, label: tinybert, intermediate_epochs: 1,
     student: {layers: 1, hidden_size: 16, num_attention_heads: 2, intermediate_size: 32,
               init: random}}
  - {name: bilstm, label: bilstm, n_aug: 1, p_pos: 0, hidden_size: 8, mlp_size: 8}
  - {name: prune-magnitude, label: magnitude, sparsity: 0.5, schedule: gradual,
     frequency: 1, recovery: kd}
  - {name: prune-heads, label: heads, fraction: 0.5, recovery: kd}
  - {name: prune-ffn, label: ffn, fraction: 0.5, recovery: task}
"""


@pytest.mark.parametrize("device,precision", [
    ("cpu", "bf16"),
    pytest.param("cuda", "bf16", marks=needs_cuda),
    pytest.param("cuda", "fp16", marks=needs_cuda)])
def test_every_training_method_runs_in_mixed_precision(tmp_path, tiny_teacher, data_dir,
                                                       device, precision):
    text = f"""version: 1
teacher: {{model: {tiny_teacher}}}
tasks: [sst2]
methods:
{METHODS}seeds: [1]
training: {{epochs: 2, batch_size: 8, learning_rate: 1.0e-3, max_seq_length: 32,
           max_val_samples: 8, device: {device}, precision: {precision}}}
measure: {{enabled: false}}
"""
    records = run_suite(load_suite(suite_file(tmp_path, text)), get_plugin_manager(), data_dir,
                        tmp_path / "run", tmp_path / "cache")
    failed = {r["job_id"]: r.get("error") for r in records if r["status"] != "ok"}
    assert failed == {}
    for record in records:
        for step in record["training"]:
            for run in step["runs"]:
                assert run["device"].startswith(device) and run["precision"] == precision
                assert all(torch.isfinite(torch.tensor(h["train_loss"]))
                           for h in run["history"]), record["job_id"]
    magnitude = next(r for r in records if r["label"] == "magnitude")
    stats = magnitude["model"]  # the masks followed the model to the GPU and back
    assert stats["nonzero_parameters"] < stats["parameters"]
