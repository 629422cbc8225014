"""``finetune``: plain supervised fine-tuning, no teacher signal.

The runner fine-tunes the teacher with it; in a suite it is the "no distillation" baseline for
any student architecture (``student: {layers: 3}``), so every distillation method can be
compared with the same student trained on labels alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from compressbench.api import Method, StudentSpec, hookimpl


@dataclass(frozen=True)
class Params:
    student: StudentSpec | None = None  # None: fine-tune the teacher's full pretrained model


class Finetune(Method):
    name = "finetune"
    Params = Params
    description = "supervised fine-tuning on the task labels (teacher, or a student baseline)"

    def uses_teacher(self, params: Params) -> bool:
        return False  # labels only: the baseline the distillation methods are compared with

    def build(self, ctx, params: Params):
        model = ctx.pretrained() if params.student is None else ctx.make_student(params.student)
        ctx.train(model, ctx.supervised_loss(), description=f"{ctx.task.name} finetune")
        return model


@hookimpl
def register_methods(register):
    register(Finetune())
