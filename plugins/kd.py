"""``kd``: vanilla knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network").

The student matches the fine-tuned teacher's soft targets at temperature T (KL, scaled by T^2 so
its gradients keep their size as T changes, §2) mixed with the hard-label loss:

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

For regression (STS-B) there is no distribution to soften: the soft term is the squared error to
the teacher's prediction. For token tasks it is averaged over the labelled (word-initial) tokens.
The teacher's logits are computed once per task and cached (``ctx.with_teacher_logits``).

The loss helpers here are shared by the other built-in distillation plugins and may be imported
by third-party ones: ``from compressbench_plugins.kd import soft_loss``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from compressbench import Method, hookimpl
from compressbench.data import IGNORE
from compressbench.models import StudentSpec, forward_kwargs, logits_of
from compressbench.training import task_loss


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (B,) or (B, T) over the positions where ``mask`` is true."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def label_mask(kind: str, labels: torch.Tensor) -> torch.Tensor | None:
    """Token tasks: the positions that carry a label (word-initial sub-words); else None."""
    return labels != IGNORE if kind == "token" else None  # (B, T) bool


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, kind: str,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * KL(teacher || student) at temperature T, averaged over examples (or masked tokens);
    for regression the squared error to the teacher's prediction (no temperature)."""
    if kind == "regression":
        return F.mse_loss(student.view(-1), teacher.view(-1))  # (B, 1) vs (B, 1)
    t = temperature
    log_p_s = F.log_softmax(student / t, dim=-1)  # (B, C) or (B, T, C)
    log_p_t = F.log_softmax(teacher / t, dim=-1)  # (B, C) or (B, T, C)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1)  # (B,) / (B, T)
    return t * t * masked_mean(kl, mask)


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                       kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-sum softmax(z_t/T) log softmax(z_s/T) (TinyBERT's prediction-layer loss, no T^2);
    for regression the squared error to the teacher's prediction."""
    if kind == "regression":
        return F.mse_loss(student.view(-1), teacher.view(-1))  # (B, 1) vs (B, 1)
    p_t = F.softmax(teacher / temperature, dim=-1)  # (B, C) or (B, T, C)
    log_p_s = F.log_softmax(student / temperature, dim=-1)  # (B, C) or (B, T, C)
    return masked_mean(-(p_t * log_p_s).sum(-1), mask)  # (B,) / (B, T) -> scalar


def half_student(spec: StudentSpec | None, teacher_layers: int,
                 init: str = "teacher-skip") -> StudentSpec:
    """``spec``, or the usual distillation student: half the teacher's layers."""
    spec = spec or StudentSpec(init=init)
    return spec if spec.layers is not None else replace(spec, layers=max(1, teacher_layers // 2))


@dataclass(frozen=True)
class Params:
    temperature: float = 2.0  # Hinton et al. 2015 §2.1: intermediate T suits a small student
    alpha: float = 0.9  # Hinton et al. 2015 §2: "a considerably lower weight" on hard labels
    student: StudentSpec | None = None  # None: half the teacher's layers, every other one

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if not 0 <= self.alpha <= 1:
            raise ValueError("alpha must be between 0 and 1")


def kd_loss(kind: str, temperature: float, alpha: float):
    """The KD loss over a batch that carries ``teacher_logits``."""
    def loss_fn(model, batch):
        logits = logits_of(model(**forward_kwargs(model, batch)))  # (B, C) or (B, T, C)
        mask = label_mask(kind, batch["labels"])
        soft = soft_loss(logits, batch["teacher_logits"], temperature, kind, mask)
        hard = task_loss(kind, logits, batch["labels"])
        return alpha * soft + (1 - alpha) * hard, {"soft": soft.item(), "hard": hard.item()}
    return loss_fn


class KD(Method):
    name = "kd"
    Params = Params
    description = "Hinton et al. 2015: soft targets at temperature T plus hard labels"

    def build(self, ctx, params: Params):
        source = ctx.pretrained()
        spec = half_student(params.student, source.config.num_hidden_layers)
        student = ctx.make_student(spec, source)
        ctx.train(student, kd_loss(ctx.task.kind, params.temperature, params.alpha),
                  description=f"{ctx.task.name} kd", feats=ctx.with_teacher_logits("train"))
        return student


@hookimpl
def register_methods(register):
    register(KD())
