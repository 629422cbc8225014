"""What a model computes inside, captured on every forward pass: hidden states, attention
scores and probabilities, queries, keys and values, per layer, for BERT and DistilBERT (and
the students compressbench builds from them), without changing the model's code or its
attention implementation (forward hooks on the embeddings, the layers and the query/key/value
projections).

```python
with capture(teacher, "hidden", "qkv") as t:      # or c = capture(...); ...; c.close()
    teacher(**inputs)
t.hidden[0]            # embeddings output (B, T, H); t.hidden[i]: layer i's output
t.attention_scores[i]  # layer i+1's QK^T / sqrt(d) before the softmax (B, h, T, T)
t.attention_probs[i]   # its softmax over the real (unpadded) keys (B, h, T, T)
t.values[i]            # per-head values (B, h, T, d); t.queries, t.keys alike
```
Every forward pass replaces what the previous one left. Captured tensors keep their autograd
graph: a student's can take part in its loss.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from compressbench.errors import ConfigError

WHAT = ("hidden", "qkv")  # "qkv" gives queries, keys, values and both attention views
LAYER_RE = re.compile(r"(?:^|\.)(?:encoder|transformer)\.layer\.(\d+)$")
EMBEDDINGS_RE = re.compile(r"^(?:[a-z_]+\.)?embeddings$")
QKV_RE = re.compile(r"layer\.(\d+)\.attention\.(?:self\.)?(query|key|value|q_lin|k_lin|v_lin)$")
ROLE = {"query": "q", "q_lin": "q", "key": "k", "k_lin": "k", "value": "v", "v_lin": "v"}


def heads_of(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    if not heads:
        raise ConfigError(f"capture: {type(model).__name__} has no config.num_attention_heads "
                          f"(BERT and DistilBERT models only)")
    return int(heads)


class Captured:
    """Hooks on ``model`` that keep what ``what`` names from its latest forward pass."""

    def __init__(self, model: nn.Module, *what: str):
        unknown = set(what) - set(WHAT)
        if unknown or not what:
            raise ValueError(f"capture: give one or more of {', '.join(WHAT)}; got "
                             f"{', '.join(map(repr, what)) or 'nothing'}")
        self.heads = heads_of(model)
        self.handles: list = []
        self.mask: torch.Tensor | None = None
        self._hidden: dict[int, torch.Tensor] = {}
        self._qkv: dict[str, dict[int, torch.Tensor]] = {"q": {}, "k": {}, "v": {}}
        self.handles.append(model.register_forward_pre_hook(self._inputs, with_kwargs=True))
        found = {"hidden": 0, "qkv": 0}
        for name, module in model.named_modules():
            if "hidden" in what and EMBEDDINGS_RE.search(name):
                self.handles.append(module.register_forward_hook(self._keep(self._hidden, 0)))
                found["hidden"] += 1
            elif "hidden" in what and LAYER_RE.search(name):
                layer = int(LAYER_RE.search(name).group(1)) + 1
                self.handles.append(module.register_forward_hook(
                    self._keep(self._hidden, layer)))
                found["hidden"] += 1
            elif "qkv" in what and QKV_RE.search(name):
                match = QKV_RE.search(name)
                store = self._qkv[ROLE[match.group(2)]]
                self.handles.append(module.register_forward_hook(
                    self._keep(store, int(match.group(1)))))
                found["qkv"] += 1
        missing = [w for w in what if not found[w]]
        if missing:
            self.close()
            raise ConfigError(f"capture: found no {missing[0]} modules in "
                              f"{type(model).__name__} (BERT and DistilBERT models only)")

    def _inputs(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if mask is None and ids is not None:
            mask = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
        self.mask = mask
        self._hidden.clear()
        for store in self._qkv.values():
            store.clear()

    @staticmethod
    def _keep(store: dict, index: int):
        def hook(module, inputs, output):
            store[index] = output[0] if isinstance(output, tuple) else output
        return hook

    # ------------------------------------------------------------------ what was captured
    @property
    def hidden(self) -> list[torch.Tensor]:
        """[embeddings output, layer 1 output, ..., layer L output], each (B, T, H): what
        ``output_hidden_states=True`` returns."""
        return [self._hidden[i] for i in sorted(self._hidden)]

    def _heads(self, role: str) -> list[torch.Tensor]:
        out = []
        for i in sorted(self._qkv[role]):
            x = self._qkv[role][i]  # (B, T, H)
            b, t, h = x.shape
            out.append(x.view(b, t, self.heads, h // self.heads).transpose(1, 2))
        return out  # each (B, h, T, d)

    @property
    def queries(self) -> list[torch.Tensor]:
        """Per layer, the query projection split into heads, (B, h, T, d)."""
        return self._heads("q")

    @property
    def keys(self) -> list[torch.Tensor]:
        """Per layer, the key projection split into heads, (B, h, T, d)."""
        return self._heads("k")

    @property
    def values(self) -> list[torch.Tensor]:
        """Per layer, the value projection split into heads, (B, h, T, d)."""
        return self._heads("v")

    @property
    def attention_scores(self) -> list[torch.Tensor]:
        """Per layer QK^T / sqrt(d) (B, h, T, T), before the mask and the softmax."""
        return [q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
                for q, k in zip(self.queries, self.keys)]

    @property
    def attention_probs(self) -> list[torch.Tensor]:
        """Per layer the attention distribution over the real keys (B, h, T, T): what the
        model attends with (before attention dropout; in eval mode exactly what
        ``output_attentions=True`` returns)."""
        keys = self.mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        return [s.masked_fill(~keys, torch.finfo(s.dtype).min).softmax(-1)
                for s in self.attention_scores]

    def close(self) -> None:
        """Remove the hooks (the model runs as before)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __enter__(self) -> Captured:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def capture(model: nn.Module, *what: str) -> Captured:
    """Start capturing ``what`` ("hidden", "qkv") on every forward pass of ``model``; use it
    as a context manager, or call ``close()`` when done."""
    return Captured(model, *what)
