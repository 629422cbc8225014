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

    A narrower student (``hidden_size``, ``intermediate_size``, ``num_attention_heads``
    smaller than the teacher's) is random (``init: random``) or built from the teacher's
    layers with ``shrink: truncate``: every weight keeps its first rows and columns (the
    first hidden dimensions, whole attention heads, the first FFN units), the same indices
    in every layer, as in weight selection (Xu et al. 2024, "Initializing Models with Larger
    Ones"). The head size stays the teacher's, so ``hidden_size`` must be a multiple of it.

    >>> StudentSpec(layers=3, hidden_size=192, shrink="truncate").init
    'teacher-skip'
    """

    layers: int | None = None  # None: as many as the teacher
    init: str = "teacher-skip"
    hidden_size: int | None = None  # None: the teacher's; smaller needs random or shrink
    num_attention_heads: int | None = None  # None: hidden_size / the teacher's head size
    intermediate_size: int | None = None  # None: the teacher's FFN size
    # "mean": the classifier reads the mean of the token states (BERT students; models.heads)
    head: str = field(default="cls", metadata=ADDED_LATER)
    # "truncate": a narrower student keeps the first indices of the teacher's weights
    shrink: str | None = field(default=None, metadata=ADDED_LATER)

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
        if self.shrink not in (None, "truncate"):
            raise ValueError(f"student.shrink: {self.shrink!r} is not one of: truncate")
        if self.shrink is not None and self.init not in TEACHER_INITS:
            raise ValueError(f"student.shrink: truncate shrinks the teacher's layers; it needs "
                             f"init: {', '.join(TEACHER_INITS)} (not {self.init!r})")
        if resized and self.init in TEACHER_INITS and self.shrink is None:
            raise ValueError("student: a different width from the teacher's layers needs "
                             "`shrink: truncate` (keep the first dimensions, heads and FFN "
                             "units of every weight), or `init: random`")


LAYER_RE = re.compile(r"\.layer\.(\d+)\.")
#: initialisations from the teacher's own layers (see :func:`layer_map`)
TEACHER_INITS = ("teacher-skip", "teacher-spread", "teacher-first")


def half_student(spec: StudentSpec | None, teacher_layers: int,
                 init: str = "teacher-skip") -> StudentSpec:
    """``spec``, or the usual distillation student: half the teacher's layers (Sanh et al.
    2019, Sun et al. 2019), initialised by ``init``.

    >>> half_student(None, 6).layers, half_student(StudentSpec(layers=2), 6).layers
    (3, 2)
    """
    from dataclasses import replace

    spec = spec or StudentSpec(init=init)
    return spec if spec.layers is not None else replace(spec, layers=max(1, teacher_layers // 2))


def layer_map(teacher_layers: int, student_layers: int, init: str) -> list[int]:
    """Which teacher layer initialises each student layer (``init``: ``teacher-skip``,
    ``teacher-spread``, ``teacher-first``; see :class:`StudentSpec`).

    >>> layer_map(12, 6, "teacher-skip"), layer_map(12, 6, "teacher-spread")
    ([0, 2, 4, 6, 8, 10], [0, 2, 4, 7, 9, 11])
    >>> layer_map(6, 3, "teacher-first")
    [0, 1, 2]
    """
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


def student_config(teacher, spec: StudentSpec):
    """The student's transformers config: the teacher's ``teacher`` with ``spec``'s layers
    and widths (checked and completed for ``shrink: truncate``)."""
    config = teacher.__class__.from_dict(teacher.to_dict())
    config.num_hidden_layers = spec.layers or teacher.num_hidden_layers
    for key in ("hidden_size", "num_attention_heads", "intermediate_size"):
        if getattr(spec, key) is not None:
            setattr(config, key, getattr(spec, key))
    if spec.shrink == "truncate":
        truncated_width(config, teacher, spec)
    return config


def build_student(pretrained: nn.Module, spec: StudentSpec) -> nn.Module:
    config = student_config(pretrained.config, spec)
    n_teacher, layers = pretrained.config.num_hidden_layers, config.num_hidden_layers
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
        if spec.shrink == "truncate":  # the first rows and columns: (H, H) -> (H', H'), ...
            state[key] = state[key][tuple(slice(0, n) for n in student.state_dict()[key].shape)]
    student.load_state_dict(state)
    return student


def truncated_width(config, teacher, spec: StudentSpec) -> None:
    """Check and complete ``config`` (the student's) for ``shrink: truncate``: no dimension
    wider than the teacher's, and the teacher's head size, so the first ``hidden_size``
    rows of the query, key and value projections are whole heads."""
    head = teacher.hidden_size // teacher.num_attention_heads
    if spec.hidden_size is not None and spec.hidden_size % head:
        raise ConfigError(f"student.hidden_size: {spec.hidden_size} is not a multiple of the "
                          f"teacher's head size {head} (shrink: truncate keeps whole heads); "
                          f"choose e.g. {head * max(1, spec.hidden_size // head)}")
    if spec.num_attention_heads is None:
        config.num_attention_heads = config.hidden_size // head
    elif config.hidden_size != config.num_attention_heads * head:
        raise ConfigError(f"student.num_attention_heads: {config.num_attention_heads} heads of "
                          f"the teacher's size {head} make {config.num_attention_heads * head}, "
                          f"not hidden_size {config.hidden_size}; leave num_attention_heads "
                          f"out (it is hidden_size / {head})")
    for key in ("hidden_size", "intermediate_size"):
        if getattr(config, key) > getattr(teacher, key):
            raise ConfigError(f"student.{key}: {getattr(config, key)} is wider than the "
                              f"teacher's {getattr(teacher, key)}; truncation only narrows")
