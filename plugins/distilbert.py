"""``distilbert``: the DistilBERT triple loss (Sanh, Debut, Chaumond & Wolf 2019, "DistilBERT, a
distilled version of BERT").

    L = a_ce * T^2 * KL(teacher || student at T) + a_task (or a_mlm) * CE + a_cos * L_cos

``L_cos`` is 1 - cos(h_t, h_s) between the teacher's and the student's last hidden states,
averaged over non-padding tokens. The student has half the teacher's layers, initialised from
every other teacher layer; when the teacher is BERT it is a real ``DistilBertFor...`` model (no
token-type embeddings, no pooler). Set any weight to 0 to switch a term off (the paper's Table 4
ablation).

Two modes:
- ``task``: on the task's training data with the fine-tuned teacher's task logits.
- ``pretrain``: task-agnostic distillation on raw text with an MLM teacher (15% of tokens
  masked, 80/10/10 replacement, masking probabilities smoothed by token frequency^-0.7), then
  the student is fine-tuned on the task's labels, as the paper fine-tunes DistilBERT on GLUE.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from compressbench.api import (
    IGNORE,
    ConfigError,
    Example,
    Method,
    StudentSpec,
    auto_class,
    encode,
    float32,
    forward_kwargs,
    gold_loss,
    half_student,
    hookimpl,
    label_mask,
    layer_map,
    masked_mean,
    quiet_transformers,
    resolve_model_ref,
    soft_loss,
    task_kind,
)


@dataclass(frozen=True)
class Params:
    mode: str = "task"  # "task" (what the suites use) or "pretrain" (task-agnostic, then fine-tune)
    temperature: float = 2.0  # Sanh et al. 2019 §3 (the distillation temperature; T=2 in code)
    alpha_ce: float = 5.0  # Sanh et al. 2019, released training script (--alpha_ce 5.0)
    alpha_task: float = 2.0  # task mode: takes the MLM term's weight (--alpha_mlm 2.0)
    alpha_mlm: float = 2.0  # pretrain mode, Sanh et al. 2019 (--alpha_mlm 2.0)
    alpha_cos: float = 1.0  # Sanh et al. 2019 §3 cosine embedding loss (--alpha_cos 1.0)
    student: StudentSpec | None = None  # None: half the teacher's layers, every other one
    # pretrain mode only
    mlm_teacher: str | None = None  # an MLM checkpoint; None: the suite's pretrained teacher
    corpus: str | None = None  # raw text, one passage per line; None: the task's training texts
    pretrain_epochs: float = 1.0  # passes over the corpus (the paper: ~90 h on 8 V100s)
    mlm_mask_prop: float = 0.15  # Devlin et al. 2019; Sanh et al. 2019 (--mlm_mask_prop 0.15)
    word_mask: float = 0.8  # 80/10/10 replacement, Devlin et al. 2019 §3.1
    word_keep: float = 0.1
    word_rand: float = 0.1
    mlm_smoothing: float = 0.7  # Sanh et al. 2019 script (--mlm_smoothing 0.7, as XLM)

    def __post_init__(self):
        if self.mode not in ("task", "pretrain"):
            raise ValueError(f"mode: {self.mode!r} is not 'task' or 'pretrain'")
        if min(self.alpha_ce, self.alpha_task, self.alpha_mlm, self.alpha_cos) < 0:
            raise ValueError("the alpha_* weights must be non-negative")
        if abs(self.word_mask + self.word_keep + self.word_rand - 1) > 1e-6:
            raise ValueError("word_mask + word_keep + word_rand must be 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")


# --------------------------------------------------------------------------- the student

PER_LAYER = {  # BERT module -> DistilBERT module, inside one transformer layer
    "attention.self.query": "attention.q_lin", "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin", "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm", "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2", "output.LayerNorm": "output_layer_norm"}
MLM_HEAD = {"cls.predictions.transform.dense": "vocab_transform",
            "cls.predictions.transform.LayerNorm": "vocab_layer_norm"}


def is_bert(model: nn.Module) -> bool:
    return getattr(model.config, "model_type", "") == "bert"


def distilbert_config(bert_config, layers: int, num_labels: int, problem_type: str | None):
    import transformers
    act = bert_config.hidden_act if isinstance(bert_config.hidden_act, str) else "gelu"
    return transformers.DistilBertConfig(
        vocab_size=bert_config.vocab_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        n_layers=layers, n_heads=bert_config.num_attention_heads, dim=bert_config.hidden_size,
        hidden_dim=bert_config.intermediate_size, dropout=bert_config.hidden_dropout_prob,
        attention_dropout=bert_config.attention_probs_dropout_prob, activation=act,
        initializer_range=bert_config.initializer_range, pad_token_id=bert_config.pad_token_id,
        num_labels=num_labels, problem_type=problem_type)


MLM = "mlm"  # the head of distillation's general stage (masked language modelling)


def bert_to_distilbert(bert: nn.Module, layers: int, init: str, head) -> nn.Module:
    """A ``DistilBertFor...`` model whose layer i is the BERT model's layer ``layer_map[i]``;
    ``head``: ``MLM``, or the task kind whose head it gets.

    Token-type embedding 0 is folded into the position embeddings (exact for single sentences;
    DistilBERT has no segment embeddings, so a pair's second segment loses that signal)."""
    import transformers
    cfg = bert.config
    mapping = layer_map(cfg.num_hidden_layers, layers, init)
    config = distilbert_config(cfg, layers, cfg.num_labels, getattr(cfg, "problem_type", None))
    if head == MLM:
        cls = transformers.DistilBertForMaskedLM
    elif task_kind(head).per_token:
        cls = transformers.DistilBertForTokenClassification
    else:
        cls = transformers.DistilBertForSequenceClassification
    student = cls(config)
    src = bert.state_dict()
    prefix = bert.base_model_prefix  # "bert"
    state = student.state_dict()
    emb = f"{prefix}.embeddings"
    state["distilbert.embeddings.word_embeddings.weight"] = src[f"{emb}.word_embeddings.weight"]
    state["distilbert.embeddings.position_embeddings.weight"] = (
        src[f"{emb}.position_embeddings.weight"] + src[f"{emb}.token_type_embeddings.weight"][0])
    for w in ("weight", "bias"):
        state[f"distilbert.embeddings.LayerNorm.{w}"] = src[f"{emb}.LayerNorm.{w}"]
    for j, i in enumerate(mapping):
        for b_name, d_name in PER_LAYER.items():
            for w in ("weight", "bias"):
                state[f"distilbert.transformer.layer.{j}.{d_name}.{w}"] = \
                    src[f"{prefix}.encoder.layer.{i}.{b_name}.{w}"]
    if head == MLM:
        for b_name, d_name in MLM_HEAD.items():
            for w in ("weight", "bias"):
                state[f"{d_name}.{w}"] = src[f"{b_name}.{w}"]
        state["vocab_projector.bias"] = src["cls.predictions.bias"]
        state["vocab_projector.weight"] = state["distilbert.embeddings.word_embeddings.weight"]
    student.load_state_dict(state)
    student.layer_sources = mapping  # which teacher layer each student layer came from
    return student


def make_student(source: nn.Module, spec: StudentSpec, kind) -> nn.Module:
    """DistilBERT from a BERT source with teacher weights; otherwise the generic student."""
    from compressbench.api import make_student as generic
    if is_bert(source) and spec.init in ("teacher-skip", "teacher-spread", "teacher-first") and \
            spec.layers is not None:
        return bert_to_distilbert(source, spec.layers, spec.init, kind)
    return generic(source, spec)


# --------------------------------------------------------------------------- losses

def cosine_loss(student_h: torch.Tensor, teacher_h: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens of 1 - cos(h_s, h_t)."""
    cos = F.cosine_similarity(student_h, teacher_h, dim=-1)  # (B, T)
    return masked_mean(1 - cos, attention_mask.bool())


def weighted_terms(terms: list[tuple[str, float, Callable[[], torch.Tensor]]],
                   like: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Sum of weight * term; a term whose weight is 0 is not computed (the Table 4 ablation).
    Returns the loss and each computed term's value, for the progress events."""
    parts, loss = {}, like.new_zeros(())
    for name, weight, compute in terms:
        if weight > 0:
            parts[name] = compute()
            loss = loss + weight * parts[name]
    return loss, {k: v.item() for k, v in parts.items()}


def hidden_width(model: nn.Module) -> int:
    return model.config.hidden_size


def triple_loss(teacher: nn.Module, kind, p: Params):
    """Task mode: a_ce * soft + a_task * task loss + a_cos * cosine, teacher run alongside."""
    def loss_fn(model, batch):
        with torch.no_grad():
            t_out = teacher(**forward_kwargs(teacher, batch), output_hidden_states=True)
        s_out = model(**forward_kwargs(model, batch), output_hidden_states=True)
        s_logits, t_logits = s_out.logits, t_out.logits  # (B, C) or (B, T, C)
        mask = label_mask(kind, batch["labels"])
        return weighted_terms([
            ("ce", p.alpha_ce, lambda: soft_loss(s_logits, t_logits, p.temperature, kind, mask)),
            ("task", p.alpha_task, lambda: gold_loss(kind, s_logits, batch)),
            # last hidden states (B, T, H) of both, over non-padding tokens
            ("cos", p.alpha_cos, lambda: cosine_loss(s_out.hidden_states[-1],
                                                     t_out.hidden_states[-1],
                                                     batch["attention_mask"]))], s_logits)
    return loss_fn


def token_probs(feats: list[dict], vocab_size: int, special_ids: list[int],
                smoothing: float) -> torch.Tensor:
    """Masking probability per vocabulary id: count^-smoothing (rare tokens masked more
    often), zero for special tokens, normalised (Sanh et al. 2019 / XLM)."""
    counts = torch.zeros(vocab_size)  # (V,)
    for f in feats:
        counts += torch.bincount(torch.tensor(f["input_ids"]), minlength=vocab_size)[:vocab_size]
    probs = counts.clamp_min(1) ** -smoothing  # (V,)
    probs[special_ids] = 0
    return probs / probs.sum()


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, probs: torch.Tensor,
                p: Params, mask_id: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ceil(15% of real tokens) positions with frequency-smoothed probabilities, then
    replace 80% by [MASK], keep 10%, randomise 10%. Returns (inputs, MLM labels)."""
    weights = probs[input_ids] * attention_mask  # (B, T)
    flat = weights.flatten()  # (B*T,)
    n = min(math.ceil(p.mlm_mask_prop * int(attention_mask.sum())), int((flat > 0).sum()))
    picked = torch.zeros_like(flat, dtype=torch.bool)  # (B*T,)
    if n > 0:
        picked[torch.multinomial(flat / flat.sum(), n, replacement=False)] = True
    picked = picked.view_as(input_ids)  # (B, T)
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE))  # (B, T)
    real = input_ids[picked]  # (n,)
    how = torch.multinomial(torch.tensor([p.word_mask, p.word_keep, p.word_rand]), len(real),
                            replacement=True)  # (n,) 0: mask, 1: keep, 2: random
    rand = torch.randint(vocab_size, real.shape)  # (n,)
    new = torch.where(how == 0, torch.full_like(real, mask_id), torch.where(how == 1, real, rand))
    out = input_ids.clone()
    out[picked] = new
    return out, labels


def mlm_loss(teacher: nn.Module, probs: torch.Tensor, p: Params, mask_id: int, vocab: int):
    """Pretrain mode: a_ce * soft MLM targets + a_mlm * MLM loss + a_cos * cosine."""
    def loss_fn(model, batch):
        ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], probs, p,
                                  mask_id, vocab)  # (B, T) each
        inputs = {"input_ids": ids, "attention_mask": batch["attention_mask"]}
        with torch.no_grad():
            t_out = teacher(**inputs, output_hidden_states=True)
        s_out = model(**inputs, output_hidden_states=True)
        real = batch["attention_mask"].bool()  # (B, T): the soft loss covers every real token
        return weighted_terms([
            ("ce", p.alpha_ce,
             lambda: soft_loss(s_out.logits, t_out.logits, p.temperature, "token", real)),
            ("mlm", p.alpha_mlm,  # (B*T, V) vs (B*T,)
             lambda: F.cross_entropy(s_out.logits.flatten(0, 1), labels.flatten(),
                                     ignore_index=IGNORE)),
            ("cos", p.alpha_cos, lambda: cosine_loss(s_out.hidden_states[-1],
                                                     t_out.hidden_states[-1],
                                                     batch["attention_mask"]))], s_out.logits)
    return loss_fn


# --------------------------------------------------------------------------- the method

def load_mlm_teacher(ref: str) -> nn.Module:
    import transformers

    quiet_transformers()
    try:
        model, info = transformers.AutoModelForMaskedLM.from_pretrained(
            ref, output_loading_info=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"distilbert.mlm_teacher: cannot load '{ref}': "
                          f"{str(exc).splitlines()[0]}") from None
    head = [k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + ".")]
    if head:
        raise ConfigError(f"distilbert.mlm_teacher: '{ref}' has no trained MLM head (missing "
                          f"{head[0]}); pretrain mode needs an MLM checkpoint, e.g. "
                          f"mlm_teacher: bert-base-uncased")
    return float32(model).eval()


def corpus_features(ctx, p: Params) -> list[dict]:
    if p.corpus is None:
        return [{k: f[k] for k in ("input_ids", "token_type_ids") if k in f}
                for f in ctx.features["train"]]
    path = Path(p.corpus)
    if not path.is_file():
        raise ConfigError(f"distilbert.corpus: {path}: no such file (raw text, one passage per "
                          f"line)")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    examples = [Example(ln, None, 0) for ln in lines]
    feats = encode(_PlainTask, ctx.tokenizer, examples, ctx.training.max_seq_length)
    return [{k: f[k] for k in ("input_ids", "token_type_ids") if k in f} for f in feats]


class _PlainTask:  # what ``encode`` needs to tokenize raw text
    kind = task_kind("classification")


def to_task_model(mlm_student: nn.Module, kind, num_labels: int) -> nn.Module:
    """The distilled encoder under a fresh task head of the same model family."""
    config = mlm_student.config.__class__.from_dict(mlm_student.config.to_dict())
    config.num_labels = num_labels
    config.problem_type = task_kind(kind).problem_type
    model = auto_class(kind).from_config(config)
    prefix = model.base_model_prefix + "."
    encoder = {k: v for k, v in mlm_student.state_dict().items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    if unexpected or any(k.startswith(prefix) for k in missing):
        raise RuntimeError(f"distilbert: encoder weights do not fit the task model "
                           f"({(unexpected or missing)[0]})")
    return model


class DistilBERT(Method):
    name = "distilbert"
    Params = Params
    description = "Sanh et al. 2019 triple loss (soft targets, task/MLM, cosine); task or pretrain"
    uses_transfer = True  # task mode distils on the transfer set (the teacher runs alongside)

    def check(self, params: Params, facts) -> None:
        hidden = getattr(facts.teacher_config, "hidden_size", None)
        spec = params.student
        if params.mode == "task" and params.alpha_cos > 0 and spec is not None and \
                spec.hidden_size and hidden and spec.hidden_size != hidden:
            raise ConfigError(f"{facts.where}.student.hidden_size: {spec.hidden_size} differs "
                              f"from the teacher's {hidden}, which the cosine loss needs; set "
                              f"alpha_cos: 0 for a narrower student")
        if params.mode == "pretrain" and params.corpus and not Path(params.corpus).is_file():
            raise ConfigError(f"{facts.where}.corpus: {params.corpus}: no such file (raw text, "
                              f"one passage per line)")

    def uses_teacher(self, params: Params) -> bool:
        """In task mode with ``alpha_ce`` and ``alpha_cos`` 0 it is DistilBERT's student
        fine-tuned on labels alone: the baseline of the distilled one."""
        return params.mode == "pretrain" or params.alpha_ce > 0 or params.alpha_cos > 0

    def build(self, ctx, params: Params):
        if params.mode == "pretrain":
            return self.pretrain(ctx, params)
        teacher = ctx.teacher()
        source = ctx.pretrained()
        spec = half_student(params.student, source.config.num_hidden_layers)
        student = make_student(source, spec, ctx.task.kind)
        if params.alpha_cos > 0 and hidden_width(student) != hidden_width(teacher):
            raise ConfigError("distilbert: the cosine loss needs the teacher's hidden size; "
                              "set alpha_cos: 0 for a narrower student")
        layers_from = getattr(student, "layer_sources", None)
        ctx.describe_student(student, init=spec.init,
                             source=getattr(source, "compressbench_source", "given model"),
                             layers_from=list(layers_from) if layers_from else None)
        ctx.emit("student", {"class": type(student).__name__, "layers_from_teacher": layers_from})
        ctx.train(student, triple_loss(teacher, ctx.task.kind, params),
                  description=f"{ctx.task.name} distilbert",
                  feats=ctx.transfer_set() if ctx.training.transfer else None)
        return student

    def pretrain(self, ctx, params: Params):
        ref = resolve_model_ref(params.mlm_teacher) if params.mlm_teacher else ctx.pretrained_ref
        teacher = load_mlm_teacher(ref).to(ctx.device)  # the loss runs it on the batches
        vocab = teacher.config.vocab_size
        if vocab != len(ctx.tokenizer):
            raise ConfigError(f"distilbert.mlm_teacher: '{ref}' has a vocabulary of {vocab}, "
                              f"the suite's tokenizer {len(ctx.tokenizer)}; use a teacher with "
                              f"the same vocabulary")
        spec = half_student(params.student, teacher.config.num_hidden_layers)
        student = make_student(teacher, spec, MLM)
        feats = corpus_features(ctx, params)
        probs = token_probs(feats, vocab, ctx.tokenizer.all_special_ids, params.mlm_smoothing)
        ctx.train(student, mlm_loss(teacher, probs, params, ctx.tokenizer.mask_token_id, vocab),
                  description=f"{ctx.task.name} distilbert-pretrain", feats=feats,
                  epochs=params.pretrain_epochs, validate=False)
        del teacher
        model = to_task_model(student, ctx.task.kind, ctx.task.num_labels)
        ctx.train(model, ctx.supervised_loss(), description=f"{ctx.task.name} distilbert-ft")
        return model


@hookimpl
def register_methods(register):
    register(DistilBERT())
