"""``tinybert``: task-specific TinyBERT distillation (Jiao et al. 2019, "TinyBERT: Distilling
BERT for Natural Language Understanding").

A narrower, shallower student (TinyBERT4 is 4 layers, hidden 312, FFN 1200 for a 768-wide
BERT-base; the defaults scale those widths to the teacher: hidden 156 and FFN 600 for the 384-wide
MiniLM), with the teacher's number of heads so attention maps compare head by head.

Stage 1, intermediate layers (student layer m <- teacher layer g(m) = floor(m * N / M)):
    L = MSE(E_s W_e, E_t) + sum_m MSE(H_s,m W_h, H_t,g(m)) + sum_m MSE(A_s,m, A_t,g(m))
where A are the attention scores QK^T / sqrt(d) before the softmax (averaged over heads, padding
excluded) and W_e, W_h are learned projections to the teacher's width (dropped afterwards).
Stage 2, prediction layer: soft cross-entropy -softmax(z_t/T) . log softmax(z_s/T), T = 1, on the
teacher's cached logits. Regression has no distribution to match: as in the reference code
(huawei-noah/Pretrained-Language-Model, TinyBERT/task_distill.py, whose regression branch is
``MSELoss()(student_logits.view(-1), label_ids.view(-1))``) the student fits the gold score
(``regression_target: gold``); ``regression_target: teacher`` fits the teacher's prediction.

The student starts from random weights, or from a general TinyBERT checkpoint
(``student: {init: path/or/hub-id}``). The paper's GloVe-based data augmentation is not done
here (``bilstm`` has Tang et al.'s augmentation).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressbench_plugins.kd import label_mask, soft_cross_entropy
from torch import nn

from compressbench import Method, hookimpl
from compressbench.errors import ConfigError
from compressbench.models import StudentSpec, forward_kwargs, logits_of


@dataclass(frozen=True)
class Params:
    student: StudentSpec | None = None  # None: 4 layers, widths scaled from TinyBERT4/BERT-base
    intermediate_epochs: float = 20.0  # Jiao et al. 2019 §4.2 (intermediate-layer stage)
    temperature: float = 1.0  # Jiao et al. 2019 §3.1 eq. 10: T = 1 worked well
    embedding_weight: float = 1.0  # Jiao et al. 2019 eq. 11: the layer losses are summed
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    regression_target: str = "gold"  # Huawei task_distill.py: MSE to the gold score; or "teacher"

    def __post_init__(self):
        if self.intermediate_epochs < 0 or self.temperature <= 0:
            raise ValueError("intermediate_epochs must be >= 0 and temperature positive")
        if self.regression_target not in ("gold", "teacher"):
            raise ValueError(f"regression_target: {self.regression_target!r} is not 'gold' or "
                             f"'teacher'")


TINYBERT4 = {"layers": 4, "hidden": 312 / 768, "intermediate": 1200 / 3072}  # Jiao et al. Table 1
QK_RE = re.compile(r"layer\.(\d+)\.attention\.(?:self\.)?(query|key|q_lin|k_lin)$")


def default_student(config) -> StudentSpec:
    """TinyBERT4's shape scaled to the teacher; hidden a multiple of the teacher's heads."""
    heads = config.num_attention_heads
    hidden = max(heads, round(config.hidden_size * TINYBERT4["hidden"] / heads) * heads)
    return StudentSpec(layers=min(TINYBERT4["layers"], config.num_hidden_layers), init="random",
                       hidden_size=hidden, num_attention_heads=heads,
                       intermediate_size=round(config.intermediate_size
                                               * TINYBERT4["intermediate"]))


def layer_mapping(teacher_layers: int, student_layers: int) -> list[int]:
    """g(m) for m = 1 .. M: the teacher layer (1-based) each student layer learns from."""
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


def keep_output(store: dict, layer: int):
    """A forward hook that stores the module's output under ``layer``."""
    def hook(module, inputs, output):
        store[layer] = output
    return hook


class AttentionScores:
    """Captures each layer's queries and keys with forward hooks and turns them into the
    pre-softmax scores QK^T / sqrt(d) (B, heads, T, T): works for BERT and DistilBERT."""

    def __init__(self, model: nn.Module, heads: int):
        self.heads, self.q, self.k, self.handles = heads, {}, {}, []
        for name, module in model.named_modules():
            match = QK_RE.search(name)
            if match:
                store = self.q if match.group(2) in ("query", "q_lin") else self.k
                self.handles.append(module.register_forward_hook(
                    keep_output(store, int(match.group(1)))))
        if not self.handles:
            raise ConfigError(f"tinybert: found no attention query/key layers in "
                              f"{type(model).__name__} (BERT-family models only)")

    def scores(self) -> list[torch.Tensor]:
        out = []
        for i in sorted(self.q):
            q, k = self.q[i], self.k[i]  # (B, T, H)
            b, t, h = q.shape
            d = h // self.heads
            q = q.view(b, t, self.heads, d).transpose(1, 2)  # (B, heads, T, d)
            k = k.view(b, t, self.heads, d).transpose(1, 2)  # (B, heads, T, d)
            out.append(q @ k.transpose(-1, -2) / d ** 0.5)  # (B, heads, T, T)
        self.q.clear()
        self.k.clear()
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the elements where ``mask`` (broadcastable, bool) is true."""
    mask = mask.expand_as(a).to(a.dtype)
    return (((a - b) ** 2) * mask).sum() / mask.sum().clamp_min(1.0)


def intermediate_loss(student_hidden: tuple, teacher_hidden: tuple, student_att: list,
                      teacher_att: list, mapping: list[int], proj: nn.ModuleDict,
                      attention_mask: torch.Tensor, p: Params):
    tokens = attention_mask.bool()[..., None]  # (B, T, 1)
    pairs = (attention_mask[:, None, :, None] * attention_mask[:, None, None, :]).bool()
    # pairs: (B, 1, T, T) query and key both real tokens
    emb = masked_mse(proj["embedding"](student_hidden[0]), teacher_hidden[0], tokens)
    hid = student_hidden[0].new_zeros(())
    att = student_hidden[0].new_zeros(())
    for m, g in enumerate(mapping, start=1):
        # hidden states (B, T, H_s) -> (B, T, H_t)
        hid = hid + masked_mse(proj["hidden"](student_hidden[m]), teacher_hidden[g], tokens)
        # attention scores (B, heads, T, T), padding excluded
        att = att + masked_mse(student_att[m - 1], teacher_att[g - 1], pairs)
    loss = p.embedding_weight * emb + p.hidden_weight * hid + p.attention_weight * att
    return loss, {"emb": emb.item(), "hidden": hid.item(), "att": att.item()}


def stage1_loss(teacher: nn.Module, mapping: list[int], proj: nn.ModuleDict, p: Params,
                heads: int):
    teacher_scores = AttentionScores(teacher, heads)
    state = {}

    def loss_fn(model, batch):
        if "scores" not in state:
            state["scores"] = AttentionScores(model, heads)
        with torch.no_grad():
            t_out = teacher(**forward_kwargs(teacher, batch), output_hidden_states=True)
            t_att = teacher_scores.scores()
        s_out = model(**forward_kwargs(model, batch), output_hidden_states=True)
        s_att = state["scores"].scores()
        return intermediate_loss(s_out.hidden_states, t_out.hidden_states, s_att, t_att,
                                 mapping, proj, batch["attention_mask"], p)

    def close():
        teacher_scores.remove()
        if "scores" in state:
            state["scores"].remove()
    loss_fn.close = close
    return loss_fn


def prediction_loss(kind: str, temperature: float, regression_target: str = "gold"):
    def loss_fn(model, batch):
        logits = logits_of(model(**forward_kwargs(model, batch)))  # (B, C) or (B, T, C)
        if kind == "regression" and regression_target == "gold":
            return F.mse_loss(logits.view(-1), batch["labels"].view(-1).to(logits.dtype))  # (B,)
        return soft_cross_entropy(logits, batch["teacher_logits"], temperature, kind,
                                  label_mask(kind, batch["labels"]))
    return loss_fn


class TinyBERT(Method):
    name = "tinybert"
    Params = Params
    version = "2"  # 2: regression fits the gold score by default, as the reference code
    description = "Jiao et al. 2019: embedding/hidden/attention MSE, then soft cross-entropy"

    def check(self, params: Params, facts) -> None:
        heads = getattr(facts.teacher_config, "num_attention_heads", None)
        spec = params.student
        if spec is not None and spec.num_attention_heads and heads and \
                spec.num_attention_heads != heads:
            raise ConfigError(f"{facts.where}.student.num_attention_heads: "
                              f"{spec.num_attention_heads} differs from the teacher's {heads}; "
                              f"attention maps are compared head by head")

    def build(self, ctx, params: Params):
        teacher = ctx.teacher()
        cfg = teacher.config
        spec = params.student or default_student(cfg)
        student = ctx.make_student(spec)
        s_cfg = student.config
        if s_cfg.num_attention_heads != cfg.num_attention_heads:
            raise ConfigError(f"tinybert: the student needs the teacher's "
                              f"{cfg.num_attention_heads} attention heads (attention maps are "
                              f"compared head by head)")
        mapping = layer_mapping(cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        ctx.emit("tinybert_layers", {"mapping": mapping, "hidden": s_cfg.hidden_size})
        if params.intermediate_epochs > 0:
            proj = nn.ModuleDict({"embedding": nn.Linear(s_cfg.hidden_size, cfg.hidden_size),
                                  "hidden": nn.Linear(s_cfg.hidden_size, cfg.hidden_size)})
            loss = stage1_loss(teacher, mapping, proj, params, cfg.num_attention_heads)
            try:
                ctx.train(student, loss, description=f"{ctx.task.name} tinybert-1",
                          extra=proj, epochs=params.intermediate_epochs, validate=False)
            finally:
                loss.close()
        del teacher
        ctx.train(student, prediction_loss(ctx.task.kind, params.temperature,
                                           params.regression_target),
                  description=f"{ctx.task.name} tinybert-2",
                  feats=ctx.with_teacher_logits("train"))
        return student


@hookimpl
def register_methods(register):
    register(TinyBERT())
