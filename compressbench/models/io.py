"""Running a model: the inputs its forward accepts, and its logits; the name of a saved model's
description file; which runtime owns a saved format."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

META = "compressbench.json"


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def forward_kwargs(model: nn.Module, batch: dict) -> dict:
    """The model inputs of ``batch`` that ``model.forward`` names (DistilBERT takes no
    token_type_ids); labels and extra per-example tensors (teacher logits) are never passed.
    A forward that names none of them but takes ``**kwargs`` gets all of them."""
    import inspect
    params = inspect.signature(model.forward).parameters
    named = [k for k in MODEL_INPUTS if k in params and k in batch]
    if not named and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        named = [k for k in MODEL_INPUTS if k in batch]
    return {k: batch[k] for k in named}


def logits_of(output: Any) -> torch.Tensor:
    """A model's logits: ``output.logits`` for a transformers output, else ``output`` (a module
    that returns its logits tensor).

    >>> import torch
    >>> logits_of(torch.zeros(2, 3)).shape
    torch.Size([2, 3])
    """
    return output.logits if hasattr(output, "logits") else output


def format_owner(fmt: str) -> Any | None:
    """The backend whose runtime-only models are saved as ``fmt`` (None: a PyTorch format):
    one a plugin manager of this process registered, else one an installed plugin registers."""
    if fmt in ("hf", "weights", "torch", "state"):
        return None
    from compressbench.plugins import find_seen
    return find_seen("backends", f"format:{fmt}",
                     lambda b: getattr(b, "saved_format", None) == fmt)
