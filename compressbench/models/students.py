"""Students built from a teacher: which layers, how initialised (:class:`StudentSpec`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from compressbench.errors import ConfigError
from compressbench.models.teacher import (
    NO_REMOTE_CODE,
    float32,
    refuse_remote_code,
    resolve_model_ref,
)
from compressbench.schema import ADDED_LATER


@dataclass(frozen=True)
class StudentSpec:
    """A student derived from the teacher's architecture.

    ``init``: ``teacher-skip`` (every k-th teacher layer from the first: [0, 2, 4, 6, 8, 10] for
    12 -> 6), ``teacher-spread`` (evenly spread from the first to the last: [0, 2, 4, 7, 9, 11],
    the layers Sanh et al.'s released DistilBERT took), ``teacher-first`` (the first layers, as
    PKD), ``random``, or a path to a pretrained checkpoint. ``head``: ``cls`` (BERT's pooler on
    [CLS]) or ``mean`` (the mean of the last layer's token states, :mod:`compressbench.models.heads`).
    """

    layers: int | None = None  # None: as many as the teacher
    init: str = "teacher-skip"
    hidden_size: int | None = None  # only with init: random
    num_attention_heads: int | None = None  # only with init: random
    intermediate_size: int | None = None  # only with init: random
    # "mean": the classifier reads the mean of the token states (BERT students; models.heads)
    head: str = field(default="cls", metadata=ADDED_LATER)

    def __post_init__(self):
        if self.layers is not None and self.layers < 1:
            raise ValueError("student.layers must be at least 1")
        resized = any(v is not None for v in (self.hidden_size, self.num_attention_heads,
                                               self.intermediate_size))
        if self.hidden_size is not None and self.num_attention_heads is not None and \
                self.hidden_size % self.num_attention_heads:
            raise ValueError(f"student: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.head not in ("cls", "mean"):
            raise ValueError(f"student.head: {self.head!r} is not one of cls, mean")
        if resized and self.init in TEACHER_INITS:
            raise ValueError("student: a different width needs `init: random` (teacher "
                             "weights have the teacher's width)")


LAYER_RE = re.compile(r"\.layer\.(\d+)\.")
#: initialisations from the teacher's own layers (see :func:`layer_map`)
TEACHER_INITS = ("teacher-skip", "teacher-spread", "teacher-first")


def half_student(spec: StudentSpec | None, teacher_layers: int,
                 init: str = "teacher-skip") -> StudentSpec:
    """``spec``, or the usual distillation student: half the teacher's layers (Sanh et al.
    2019, Sun et al. 2019), initialised by ``init``."""
    from dataclasses import replace

    spec = spec or StudentSpec(init=init)
    return spec if spec.layers is not None else replace(spec, layers=max(1, teacher_layers // 2))


def layer_map(teacher_layers: int, student_layers: int, init: str) -> list[int]:
    """Which teacher layer initialises each student layer."""
    if student_layers > teacher_layers:
        raise ConfigError(f"student.layers: {student_layers} is more than the teacher's "
                          f"{teacher_layers}")
    if init == "teacher-first":
        return list(range(student_layers))
    if init == "teacher-spread":  # the first and the last, evenly between (rounding half up)
        if student_layers == 1:
            return [0]
        gap = (teacher_layers - 1) / (student_layers - 1)
        return [int(i * gap + 0.5) for i in range(student_layers)]
    step = teacher_layers // student_layers  # teacher-skip: 0, step, 2*step, ...
    return [i * step for i in range(student_layers)]


def make_student(pretrained: nn.Module, spec: StudentSpec) -> nn.Module:
    """A copy of ``pretrained`` (a task model) with fewer layers, initialised per ``spec``,
    with the head ``spec.head``."""
    student = build_student(pretrained, spec)
    if spec.head == "cls":
        return student
    from compressbench.models.heads import with_head
    return with_head(student, spec.head)


def build_student(pretrained: nn.Module, spec: StudentSpec) -> nn.Module:
    config = pretrained.config.__class__.from_dict(pretrained.config.to_dict())
    n_teacher = config.num_hidden_layers
    layers = spec.layers or n_teacher
    config.num_hidden_layers = layers
    for key in ("hidden_size", "num_attention_heads", "intermediate_size"):
        if getattr(spec, key) is not None:
            setattr(config, key, getattr(spec, key))
    if spec.init not in (*TEACHER_INITS, "random"):
        path = resolve_model_ref(spec.init)
        refuse_remote_code(path, "student")
        return float32(type(pretrained).from_pretrained(path, num_labels=config.num_labels,
                                                        problem_type=config.problem_type,
                                                        **NO_REMOTE_CODE))
    student = type(pretrained)(config)  # random weights from the seeded global RNG
    if spec.init == "random":
        return student
    mapping = layer_map(n_teacher, layers, spec.init)
    source = pretrained.state_dict()
    state = {}
    for key in student.state_dict():
        match = LAYER_RE.search(key)
        if match:
            teacher_layer = mapping[int(match.group(1))]
            src = key[:match.start()] + f".layer.{teacher_layer}." + key[match.end():]
        else:
            src = key
        state[key] = source[src]
    student.load_state_dict(state)
    return student
