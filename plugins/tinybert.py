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

The student starts from random weights, from a general TinyBERT checkpoint
(``student: {init: path/or/hub-id}``), or from TinyBERT's general distillation (§3.3, the
"general" stage, ``general_epochs > 0``): stage 1's intermediate-layer loss against the
*pretrained* teacher (not fine-tuned) on a corpus (``general_corpus``: raw text, one passage
per line; null: the task's training texts), cached under the cache's ``shared/`` folder by
everything it depends on, so every task and job with the same teacher, corpus, student and
seed reuses it. Both task stages train on the step's transfer set when there is one
(``training: {transfer: {augment: {rules: tinybert}}}``: the paper's augmentation, §3.3).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from compressbench.api import (
    ConfigError,
    Example,
    Method,
    StudentSpec,
    capture,
    encode,
    forward_kwargs,
    hookimpl,
    is_saved,
    label_mask,
    load_model,
    logits_of,
    masked_mse,
    pair_mask,
    save_model,
    soft_cross_entropy,
    task_kind,
)


@dataclass(frozen=True)
class Params:
    student: StudentSpec | None = None  # None: 4 layers, widths scaled from TinyBERT4/BERT-base
    intermediate_epochs: float = 20.0  # Jiao et al. 2019 §4.2 (intermediate-layer stage)
    temperature: float = 1.0  # Jiao et al. 2019 §3.1 eq. 10: T = 1 worked well
    embedding_weight: float = 1.0  # Jiao et al. 2019 eq. 11: the layer losses are summed
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    regression_target: str = "gold"  # Huawei task_distill.py: MSE to the gold score; or "teacher"
    general_epochs: float = 0.0  # general distillation first (§3.3; the paper: 3 epochs on
    #                              English Wikipedia); 0: none
    general_corpus: str | None = None  # raw text, one passage per line; None: the task's texts

    def __post_init__(self):
        if self.intermediate_epochs < 0 or self.temperature <= 0 or self.general_epochs < 0:
            raise ValueError("intermediate_epochs and general_epochs must be >= 0 and "
                             "temperature positive")
        if self.regression_target not in ("gold", "teacher"):
            raise ValueError(f"regression_target: {self.regression_target!r} is not 'gold' or "
                             f"'teacher'")


TINYBERT4 = {"layers": 4, "hidden": 312 / 768, "intermediate": 1200 / 3072}  # Jiao et al. Table 1


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


def intermediate_loss(student_hidden: tuple, teacher_hidden: tuple, student_att: list,
                      teacher_att: list, mapping: list[int], proj: nn.ModuleDict,
                      attention_mask: torch.Tensor, p: Params):
    tokens = attention_mask.bool()[..., None]  # (B, T, 1)
    pairs = pair_mask(attention_mask)  # (B, 1, T, T) query and key both real tokens
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


def stage1_loss(teacher: nn.Module, mapping: list[int], proj: nn.ModuleDict, p: Params):
    """Stage 1's loss; the attention scores come from hooks on the query and key
    projections (``capture``), removed by the loss's ``close()``."""
    teacher_qkv = capture(teacher, "qkv")
    state = {}

    def loss_fn(model, batch):
        if "student" not in state:
            state["student"] = capture(model, "qkv")
        with torch.no_grad():
            t_out = teacher(**forward_kwargs(teacher, batch), output_hidden_states=True)
            t_att = teacher_qkv.attention_scores
        s_out = model(**forward_kwargs(model, batch), output_hidden_states=True)
        s_att = state["student"].attention_scores
        return intermediate_loss(s_out.hidden_states, t_out.hidden_states, s_att, t_att,
                                 mapping, proj, batch["attention_mask"], p)

    def close():
        teacher_qkv.close()
        if "student" in state:
            state["student"].close()
    loss_fn.close = close
    return loss_fn


def projections(student_config, teacher_config) -> nn.ModuleDict:
    """W_e and W_h: the student's widths to the teacher's (learned, dropped afterwards)."""
    s, t = student_config.hidden_size, teacher_config.hidden_size
    return nn.ModuleDict({"embedding": nn.Linear(s, t), "hidden": nn.Linear(s, t)})


def corpus_texts(ctx, p: Params) -> list[str]:
    """The general stage's corpus: the file's non-empty lines, or the task's training texts."""
    if p.general_corpus is None:
        return [" ".join(ex.text_a) if isinstance(ex.text_a, list) else ex.text_a
                for ex in ctx.data.train]
    path = Path(p.general_corpus)
    if not path.is_file():
        raise ConfigError(f"tinybert.general_corpus: {path}: no such file (raw text, one "
                          f"passage per line)")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


class _PlainTask:  # what ``encode`` needs to tokenize raw text
    kind = task_kind("classification")


def prediction_loss(kind, temperature: float, regression_target: str = "gold"):
    kind = task_kind(kind)

    def loss_fn(model, batch):
        logits = logits_of(model(**forward_kwargs(model, batch)))  # (B, C) or (B, T, C)
        if not kind.has_classes and regression_target == "gold":  # a score, not classes
            return F.mse_loss(logits.view(-1), batch["labels"].view(-1).to(logits.dtype))  # (B,)
        return soft_cross_entropy(logits, batch["teacher_logits"], temperature, kind,
                                  label_mask(kind, batch["labels"]))
    return loss_fn


class TinyBERT(Method):
    name = "tinybert"
    Params = Params
    version = "2"  # 2: regression fits the gold score by default, as the reference code
    description = "Jiao et al. 2019: embedding/hidden/attention MSE, then soft cross-entropy"
    uses_transfer = True

    def check(self, params: Params, facts) -> None:
        heads = getattr(facts.teacher_config, "num_attention_heads", None)
        spec = params.student
        if spec is not None and spec.num_attention_heads and heads and \
                spec.num_attention_heads != heads:
            raise ConfigError(f"{facts.where}.student.num_attention_heads: "
                              f"{spec.num_attention_heads} differs from the teacher's {heads}; "
                              f"attention maps are compared head by head")
        if params.general_corpus and not Path(params.general_corpus).is_file():
            raise ConfigError(f"{facts.where}.general_corpus: {params.general_corpus}: no such "
                              f"file (raw text, one passage per line)")

    def general(self, ctx, params: Params, spec: StudentSpec):
        """The general-distilled student (§3.3): stage 1 against the pretrained teacher on the
        corpus, cached in ``ctx.shared_dir`` by teacher, head shape (kind, labels), corpus,
        student, settings and seed."""
        texts = corpus_texts(ctx, params)
        key = hashlib.sha256(json.dumps([
            ctx.pretrained_ref, ctx.task.kind.name, ctx.task.num_labels, texts, asdict(spec),
            params.general_epochs,
            params.embedding_weight, params.hidden_weight, params.attention_weight,
            ctx.training.max_seq_length, ctx.training.batch_size, ctx.training.learning_rate,
            ctx.seed, self.version], sort_keys=True, default=str).encode()).hexdigest()[:20]
        folder = ctx.shared_dir / "tinybert-general" / key if ctx.shared_dir else None
        if folder is not None and is_saved(folder):
            ctx.emit("cache_hit", {"key": key, "path": str(folder), "method": "tinybert-general"})
            return load_model(folder).train()
        pretrained = ctx.pretrained()  # not fine-tuned: the general stage is task-agnostic
        student = ctx.make_student(spec, pretrained)  # copies what it takes from it
        teacher = pretrained.to(ctx.device).eval()
        mapping = layer_mapping(teacher.config.num_hidden_layers,
                                student.config.num_hidden_layers)
        proj = projections(student.config, teacher.config)
        feats = encode(_PlainTask, ctx.tokenizer, [Example(t, None, 0) for t in texts],
                       ctx.training.max_seq_length)
        loss = stage1_loss(teacher, mapping, proj, params)
        try:
            ctx.train(student, loss, description=f"{ctx.task.name} tinybert-general",
                      extra=proj, epochs=params.general_epochs, validate=False,
                      feats=[{k: f[k] for k in ("input_ids", "token_type_ids") if k in f}
                             for f in feats])
        finally:
            loss.close()
        if folder is not None:
            save_model(student, folder, ctx.task.kind, ctx.tokenizer)
        return student

    def build(self, ctx, params: Params):
        teacher = ctx.teacher()
        cfg = teacher.config
        # both stages on the transfer set when there is one (§3.3: the augmented data)
        feats = ctx.transfer_set() if ctx.training.transfer else ctx.with_teacher_logits("train")
        spec = params.student or default_student(cfg)
        if params.general_epochs > 0:
            student = self.general(ctx, params, spec)
            ctx.describe_student(student, init="tinybert-general", source="pretrained teacher",
                                 general_epochs=params.general_epochs)
        else:
            student = ctx.make_student(spec)
        s_cfg = student.config
        if s_cfg.num_attention_heads != cfg.num_attention_heads:
            raise ConfigError(f"tinybert: the student needs the teacher's "
                              f"{cfg.num_attention_heads} attention heads (attention maps are "
                              f"compared head by head)")
        mapping = layer_mapping(cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        ctx.emit("tinybert_layers", {"mapping": mapping, "hidden": s_cfg.hidden_size})
        if params.intermediate_epochs > 0:
            proj = projections(s_cfg, cfg)
            loss = stage1_loss(teacher, mapping, proj, params)
            try:
                ctx.train(student, loss, description=f"{ctx.task.name} tinybert-1",
                          extra=proj, epochs=params.intermediate_epochs, validate=False,
                          feats=feats if ctx.training.transfer else None)
            finally:
                loss.close()
        del teacher
        ctx.train(student, prediction_loss(ctx.task.kind, params.temperature,
                                           params.regression_target),
                  description=f"{ctx.task.name} tinybert-2", feats=feats)
        return student


@hookimpl
def register_methods(register):
    register(TinyBERT())
