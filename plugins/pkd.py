"""``pkd-skip`` and ``pkd-last``: Patient Knowledge Distillation (Sun, Cheng, Gan & Liu 2019,
"Patient Knowledge Distillation for BERT Model Compression").

A k-layer student initialised from the teacher's first k layers learns from the fine-tuned
teacher's output and from its intermediate layers:

    L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(z_t || z_s at T) / C + beta * L_PT
    L_PT = mean over mapped layers and hidden units of (h_s / ||h_s|| - h_t / ||h_t||)^2 at [CLS]

The scale is the authors' code's (PKD-for-BERT-Model-Compression, ``src/KD_loss.py``), on which
the paper's grids were tuned: ``patience_loss`` is ``F.mse_loss`` of the normalised
(B, layers, H) [CLS] states, a mean over examples, layers *and* hidden units, and the soft term
is ``nn.KLDivLoss(reduction='mean')``, a mean over examples *and* the C classes. So beta = 100
here is the paper's beta = 100. (Summing over H and the layers instead, as version 1 of this
plugin did, multiplies beta by H x (k - 1): 768 for MiniLM 6 -> 3, 3,840 for BERT-base 12 -> 6,
which collapsed students to the majority class.)

Mapped layers (student layer j = 1 .. k-1; the output layer is covered by the KL term):
``skip`` takes every (N/k)-th teacher layer (12 -> 6: 2, 4, 6, 8, 10), ``last`` the last k-1
layers before the output (12 -> 6: 7, 8, 9, 10, 11). For regression the soft term is the squared
error to the teacher's prediction; for token tasks L_PT is averaged over the labelled tokens
instead of [CLS].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from compressbench.api import (
    ConfigError,
    Method,
    StudentSpec,
    forward_kwargs,
    gold_loss,
    half_student,
    hookimpl,
    label_mask,
    masked_mean,
    soft_loss,
    task_kind,
)


@dataclass(frozen=True)
class Params:
    temperature: float = 10.0  # Sun et al. 2019 §4.2 searched T in {5, 10, 20}
    alpha: float = 0.5  # Sun et al. 2019 §4.2 searched alpha in {0.2, 0.5, 0.7}
    beta: float = 100.0  # Sun et al. 2019 §4.2 searched beta in {10, 100, 500, 1000}
    student: StudentSpec | None = None  # None: half the teacher's layers, its first ones

    def __post_init__(self):
        if self.temperature <= 0 or not 0 <= self.alpha <= 1 or self.beta < 0:
            raise ValueError("temperature must be positive, alpha in [0, 1], beta >= 0")


def pkd_layers(teacher_layers: int, student_layers: int, strategy: str) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs, 1-based layer outputs (index 0 is embeddings)."""
    k, n = student_layers, teacher_layers
    if strategy == "skip":
        step = n // k
        return [(j, j * step) for j in range(1, k)]
    return [(j, n - k + j) for j in range(1, k)]


def patient_loss(student_states: tuple, teacher_states: tuple, pairs: list[tuple[int, int]],
                 mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared difference of L2-normalised states over examples, mapped layers and hidden
    units (the authors' ``F.mse_loss``), at [CLS] (mask None) or over the masked tokens (token
    tasks)."""
    total = student_states[-1].new_zeros(())
    for j, i in pairs:
        if mask is None:
            s = F.normalize(student_states[j][:, 0], dim=-1)  # (B, H) [CLS]
            t = F.normalize(teacher_states[i][:, 0], dim=-1)  # (B, H)
            total = total + ((s - t) ** 2).mean()
        else:
            s = F.normalize(student_states[j], dim=-1)  # (B, T, H)
            t = F.normalize(teacher_states[i], dim=-1)  # (B, T, H)
            total = total + masked_mean(((s - t) ** 2).mean(-1), mask)  # (B, T) -> scalar
    return total / max(1, len(pairs))


def pkd_loss(teacher: nn.Module, kind, p: Params, pairs: list[tuple[int, int]]):
    kind = task_kind(kind)

    def loss_fn(model, batch):
        with torch.no_grad():
            t_out = teacher(**forward_kwargs(teacher, batch), output_hidden_states=True)
        s_out = model(**forward_kwargs(model, batch), output_hidden_states=True)
        mask = label_mask(kind, batch["labels"])
        hard = gold_loss(kind, s_out.logits, batch)  # a transfer set's rows have no gold label
        soft = soft_loss(s_out.logits, t_out.logits, p.temperature, kind, mask)
        if kind.kl_is_class_mean():  # KLDivLoss(reduction='mean') also divides by C
            soft = soft / s_out.logits.shape[-1]
        pt = patient_loss(s_out.hidden_states, t_out.hidden_states, pairs, mask)
        loss = (1 - p.alpha) * hard + p.alpha * soft + p.beta * pt
        return loss, {"hard": hard.item(), "soft": soft.item(), "pt": pt.item()}
    return loss_fn


class PKD(Method):
    Params = Params
    version = "2"  # 2: the authors' loss scale (mean over hidden units, layers and classes)
    uses_transfer = True  # the teacher runs alongside, so any example can be distilled on

    def __init__(self, strategy: str):
        self.strategy = strategy
        self.name = f"pkd-{strategy}"
        layers = "every (N/k)-th teacher layer" if strategy == "skip" else "the last teacher layers"
        self.description = (f"Sun et al. 2019 Patient KD, {strategy}: soft targets plus "
                            f"normalised [CLS] states matched to {layers}. beta weighs the "
                            f"patient term, a mean over the H hidden units: the same beta "
                            f"counts H_BERT-base / H times more on a narrower teacher (2x on a "
                            f"384-wide MiniLM than on BERT-base's 768)")

    def check(self, params: Params, facts) -> None:
        hidden = getattr(facts.teacher_config, "hidden_size", None)
        spec = params.student
        if spec is not None and spec.hidden_size and hidden and spec.hidden_size != hidden:
            raise ConfigError(f"{facts.where}.student.hidden_size: {spec.hidden_size} differs "
                              f"from the teacher's {hidden}; the patient loss compares hidden "
                              f"states, so {self.name} needs the teacher's width")

    def uses_teacher(self, params: Params) -> bool:
        return params.alpha > 0 or params.beta > 0

    def build(self, ctx, params: Params):
        teacher = ctx.teacher()
        n = teacher.config.num_hidden_layers
        spec = half_student(params.student, n, init="teacher-first")
        student = ctx.make_student(spec)
        if student.config.hidden_size != teacher.config.hidden_size:
            raise ConfigError(f"{self.name}: the patient loss compares hidden states, so the "
                              f"student needs the teacher's hidden size")
        pairs = pkd_layers(n, spec.layers, self.strategy)
        ctx.emit("pkd_layers", {"pairs": pairs})
        ctx.train(student, pkd_loss(teacher, ctx.task.kind, params, pairs),
                  description=f"{ctx.task.name} {self.name}",
                  feats=ctx.transfer_set() if ctx.training.transfer else None)
        return student


@hookimpl
def register_methods(register):
    register(PKD("skip"))
    register(PKD("last"))
