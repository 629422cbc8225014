"""compressbench-autocast: a runtime from outside the core, as a plugin package.

``torch-autocast`` runs the saved PyTorch model eagerly under ``torch.autocast`` on the CPU: the
matrix products in bfloat16 (or float16), everything else as saved. Its own setting, ``dtype``,
is written in a suite as

    measure: {backends: [torch, {torch-autocast: {dtype: bfloat16}}]}

Whether it pays depends on the CPU: with AMX or AVX512-BF16 it can beat fp32; on a CPU with
AVX2 only, bf16 matrix products are emulated and far slower (compressbench records the CPU's
ISA flags beside every measurement). Its outputs are compared with PyTorch fp32 like any
backend's (the agreement columns). It imports only ``compressbench.api``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressbench import api

__version__ = "0.1.0"


@dataclass(frozen=True)
class Options:
    """``- torch-autocast: {dtype: bfloat16}``."""

    dtype: str = "bfloat16"  # or float16

    def __post_init__(self):
        if self.dtype not in ("bfloat16", "float16"):
            raise ValueError(f"dtype: {self.dtype!r} is not bfloat16 or float16")


class AutocastSession:
    def __init__(self, model, dtype: str):
        import torch

        self.model, self.dtype = model.eval(), getattr(torch, dtype)

    def inputs(self, batch: dict):
        import torch

        return api.forward_kwargs(self.model, {k: torch.from_numpy(v) for k, v in batch.items()})

    def __call__(self, kwargs):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=self.dtype):
            return self.model(**kwargs)

    def logits(self, output) -> np.ndarray:
        return api.logits_of(output).float().numpy()


class AutocastBackend:
    name = "torch-autocast"
    description = "PyTorch eager under CPU autocast (bf16 or fp16 matrix products)"
    packages = ("torch",)
    Options = Options

    def __init__(self, options: Options | None = None):
        self.options = options or Options()

    def configure(self, options: Options) -> AutocastBackend:
        return type(self)(options)

    def missing(self) -> str | None:
        return None

    def prepare(self, model, workdir, sample) -> dict:
        model.load_torch()  # a runtime-only model (int8 ONNX) raises Unsupported, recorded
        return {"dtype": self.options.dtype}

    def load(self, model, workdir, threads: int) -> AutocastSession:
        import torch

        torch.set_num_threads(threads)
        return AutocastSession(model.load_torch(), self.options.dtype)


@api.hookimpl
def register_backends(register):
    register(AutocastBackend())
