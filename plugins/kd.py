"""``kd``: vanilla knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network").

The student matches the fine-tuned teacher's soft targets at temperature T (KL, scaled by T^2 so
its gradients keep their size as T changes, §2) mixed with the hard-label loss:

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

For regression (STS-B) there is no distribution to soften: the soft term is the squared error to
the teacher's prediction. For token tasks it is averaged over the labelled (word-initial) tokens.
The teacher's logits are computed once per task and cached. With a transfer set
(``training: {transfer: ...}``, see README "Transfer sets") the student also learns from the
teacher's logits on unlabelled or augmented examples, the hard-label term only where a gold
label exists (``ctx.transfer_set``, ``api.gold_loss``).

The losses live in the core, for every plugin: ``from compressbench.api import soft_loss,
kd_loss`` (importing them from ``compressbench_plugins.kd`` still works, but is deprecated).
"""
from __future__ import annotations

from dataclasses import dataclass

# label_mask, masked_mean, soft_cross_entropy and soft_loss: kept importable from here for the
# third-party plugins that took them from this module before compressbench.api existed
from compressbench.api import (  # noqa: F401
    Method,
    StudentSpec,
    half_student,
    hookimpl,
    kd_loss,
    label_mask,
    masked_mean,
    soft_cross_entropy,
    soft_loss,
)


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


class KD(Method):
    name = "kd"
    Params = Params
    description = "Hinton et al. 2015: soft targets at temperature T plus hard labels"
    uses_transfer = True

    def uses_teacher(self, params: Params) -> bool:
        return params.alpha > 0

    def build(self, ctx, params: Params):
        source = ctx.pretrained()
        spec = half_student(params.student, source.config.num_hidden_layers)
        student = ctx.make_student(spec, source)
        ctx.train(student, kd_loss(ctx.task.kind, params.temperature, params.alpha),
                  description=f"{ctx.task.name} kd", feats=ctx.transfer_set())
        return student


@hookimpl
def register_methods(register):
    register(KD())
