"""PyTorch eager: the reference every speed-up is also measured against (``torch``).

It runs every model a method saves in a PyTorch format (``hf``, ``weights``); models that exist
only for one runtime (``onnx``, ``openvino``) are recorded as unsupported here without starting
a process. It has no settings and no saved format of its own.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from compressbench.measure.backend import REFERENCE, SavedModel, Unsupported


class TorchSession:
    def __init__(self, model):
        self.model = model

    def inputs(self, batch: dict):
        import torch

        from compressbench.models import forward_kwargs
        return forward_kwargs(self.model, {k: torch.from_numpy(np.ascontiguousarray(v))
                                           for k, v in batch.items()})

    def __call__(self, kwargs):
        import torch
        with torch.inference_mode():
            return self.model(**kwargs)

    def logits(self, output) -> np.ndarray:
        from compressbench.models import logits_of
        return logits_of(output).float().numpy()


class TorchBackend:
    """PyTorch eager, fp32 unless the model itself is quantized or cast: the common baseline."""

    name = REFERENCE
    marker = "o"  # in the report's plots
    description = "PyTorch eager"
    packages = ("torch",)
    needs_prepare = False  # loads the saved model as it is (runtime-only models are refused
    # by the launcher before any process starts)

    def missing(self) -> str | None:
        return None

    def prepare(self, model: SavedModel, workdir: Path, sample: list[dict]) -> dict:
        if model.runtime_only:
            raise Unsupported(f"the model exists only for {model.runtime_only} "
                              f"(saved as '{model.format}')")
        return {}

    def load(self, model: SavedModel, workdir: Path, threads: int) -> TorchSession:
        import torch
        torch.set_num_threads(threads)
        return TorchSession(model.load_torch())


