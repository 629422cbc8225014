"""Silencing other libraries' notices that are not ours to show (no torch import here)."""
from __future__ import annotations

import logging


def quiet_logs() -> None:
    """torchao (which transformers imports when it is installed) logs notices about its optional
    GPU kernels, and torch's pytree about enum registration, on every process start."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
