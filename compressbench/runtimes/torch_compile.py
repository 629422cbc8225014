"""``torch.compile`` (Inductor, dynamic shapes) on the saved PyTorch model (``torch-compile``)."""
from __future__ import annotations

from pathlib import Path

from compressbench.measure.backend import SavedModel
from compressbench.runtimes.pytorch import TorchBackend, TorchSession


class TorchCompileBackend(TorchBackend):
    """``torch.compile`` (Inductor, dynamic shapes); the compile happens in the untimed
    warm-up, and can take tens of seconds per model."""

    name = "torch-compile"
    description = "torch.compile (Inductor, dynamic shapes)"
    marker = "D"

    def load(self, model: SavedModel, workdir: Path, threads: int) -> TorchSession:
        import torch
        torch.set_num_threads(threads)
        return TorchSession(torch.compile(model.load_torch(), dynamic=True))
