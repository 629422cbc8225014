"""Running a model: the inputs its forward accepts, and its logits; the name of a saved model's
description file."""
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
    return output.logits if hasattr(output, "logits") else output
