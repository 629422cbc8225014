"""Distillation losses, shared by the built-in methods and open to any plugin (through
:mod:`compressbench.api`). Shapes: B batch, T tokens, C classes, H hidden, h heads.

Token tasks score only word-initial sub-words: :func:`label_mask` gives those positions, and
every loss here takes such a mask to average over them only.
"""
from __future__ import annotations

import torch

from compressbench import kinds
from compressbench.kinds import masked_mean
from compressbench.models import forward_kwargs, logits_of


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the elements where ``mask`` (broadcastable, bool) is true.

    >>> import torch
    >>> a, b = torch.tensor([[1.0, 2.0, 9.0]]), torch.tensor([[1.0, 4.0, 0.0]])
    >>> masked_mse(a, b, torch.tensor([[True, True, False]]))  # the padding is not counted
    tensor(2.)
    """
    mask = mask.expand_as(a).to(a.dtype)
    return (((a - b) ** 2) * mask).sum() / mask.sum().clamp_min(1.0)


def label_mask(kind, labels: torch.Tensor) -> torch.Tensor | None:
    """The positions that carry a label, (B, T) bool, for per-token kinds (word-initial
    sub-words); else None. ``kind``: the task's kind (or its name)."""
    return kinds.get(kind).label_mask(labels)


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, kind,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """The kind's soft-target loss: T^2 * KL(teacher || student) at temperature T (Hinton et
    al. 2015 §2), averaged over examples (or masked tokens); for regression the squared error
    to the teacher's prediction (no temperature)."""
    return kinds.get(kind).soft_loss(student, teacher, temperature, mask)


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                       kind, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-sum softmax(z_t/T) log softmax(z_s/T) (TinyBERT's prediction-layer loss, no T^2);
    for regression the squared error to the teacher's prediction."""
    return kinds.get(kind).soft_cross_entropy(student, teacher, temperature, mask)


def kd_loss(kind, temperature: float, alpha: float):
    """Hinton et al.'s loss over a batch that carries ``teacher_logits``
    (:meth:`~compressbench.method.Context.with_teacher_logits`):
    ``alpha * T^2 * KL + (1 - alpha) * task loss``, with the two terms reported."""
    kind = kinds.get(kind)

    def loss_fn(model, batch):
        logits = logits_of(model(**forward_kwargs(model, batch)))  # (B, C) or (B, T, C)
        mask = kind.label_mask(batch["labels"])
        soft = kind.soft_loss(logits, batch["teacher_logits"], temperature, mask)
        hard = gold_loss(kind, logits, batch)
        return alpha * soft + (1 - alpha) * hard, {"soft": soft.item(), "hard": hard.item()}
    return loss_fn


def gold_loss(kind, logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """The task loss against gold labels, over the batch's rows that have one: a transfer
    set's rows (``batch["labelled"]`` False, :meth:`Context.transfer_set`) carry only the
    teacher's labels and are left out (0 when no row has one). Batches without ``labelled``:
    every row."""
    kind = kinds.get(kind)
    labelled = batch.get("labelled")  # (B,) bool, or absent
    if labelled is None or bool(labelled.all()):
        return kind.task_loss(logits, batch["labels"])
    if not bool(labelled.any()):
        return logits.sum() * 0.0  # keeps the graph; no gold label in this batch
    return kind.task_loss(logits[labelled], batch["labels"][labelled])


def pair_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query and key both real tokens (from the (B, T) attention mask).

    >>> import torch
    >>> pair_mask(torch.tensor([[1, 1, 0]]))[0, 0].int()
    tensor([[1, 1, 0],
            [1, 1, 0],
            [0, 0, 0]], dtype=torch.int32)
    """
    m = attention_mask.bool()
    return m[:, None, :, None] & m[:, None, None, :]


def attention_kl(student: torch.Tensor, teacher: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between attention distributions (B, h, T, T) (rows: queries,
    each a distribution over keys), summed over keys and averaged over heads and real query
    tokens: MiniLM's self-attention distribution transfer (Wang et al. 2020, eq. 6). Give
    probabilities whose padded keys are zero (:attr:`Captured.attention_probs`)."""
    kl = teacher * (teacher.clamp_min(1e-12).log() - student.clamp_min(1e-12).log())
    rows = kl.sum(-1)  # (B, h, T)
    queries = attention_mask.bool()[:, None, :].expand_as(rows)  # (B, h, T)
    return masked_mean(rows, queries)


def relation(x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """softmax(x x^T / sqrt(d)) over real keys, for per-head vectors x (B, h, T, d): MiniLM's
    value relation (Wang et al. 2020, eq. 7) when x are the values."""
    scores = x @ x.transpose(-1, -2) / x.shape[-1] ** 0.5  # (B, h, T, T)
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    return scores.masked_fill(~keys, torch.finfo(scores.dtype).min).softmax(-1)
