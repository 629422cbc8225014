"""``bilstm``: distilling BERT into a single-layer BiLSTM (Tang, Lu, Liu, Mou, Vechtomova & Lin
2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks").

The student reads the teacher's WordPiece ids. One sentence: the concatenated final states of
both directions feed a ReLU MLP. Sentence pairs: a siamese encoder, features
[h1, h2, h1 * h2, |h1 - h2|]. Token tasks: a tagger on every position's states.

    L = alpha * CE(z_s, y) + (1 - alpha) * || z_s - z_t ||^2   (MSE on logits, §3.1)

The transfer set is the training data plus N rule-based augmented copies of each example
(§3.2), labelled by the teacher: each word is masked with p_mask, else replaced by a word with
the same part of speech with p_pos (POS from a lexicon), and with p_ng the example is cut to a
random n-gram (n in 1..5). Token tasks keep every word in place, so they get no n-gram sampling.
The rules are the shared ``tang`` augmenter (:mod:`compressbench.augment`), which any method's
transfer set can use too; a ``training.transfer`` set (unlabelled text, other augmenters) joins
the copies.
The student is saved as weights plus a recipe naming ``BiLSTMStudent`` and its arguments
(``compressbench.built_by``), so loading it runs no pickle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from compressbench.api import (
    Example,
    Lexicon,
    Method,
    TangOptions,
    built_by,
    encode,
    forward_kwargs,
    hookimpl,
    label_mask,
    lexicon_path,
    logits_of,
    masked_mean,
    rebuild_step,
    tang_copies,
    task_kind,
    task_loss,
)


@dataclass(frozen=True)
class Params:
    embeddings: str = "teacher"  # "teacher" (its WordPiece embeddings) or "random"
    embedding_dim: int = 300  # random embeddings: word2vec's width, as Tang et al. 2019 §4.2
    hidden_size: int = 150  # per direction, Tang et al. 2019 §4.2
    mlp_size: int = 200  # the ReLU classifier layer, Tang et al. 2019 §4.2
    alpha: float = 0.0  # weight of the hard-label CE; Tang et al. 2019 §3.1 distill on logits
    n_aug: int = 20  # augmented copies per example: n_iter = 20, Tang et al. 2019 §3.2
    p_mask: float = 0.1  # Tang et al. 2019 §3.2
    p_pos: float = 0.1  # Tang et al. 2019 §3.2
    p_ng: float = 0.25  # Tang et al. 2019 §3.2
    lexicon: str = "conll2003"  # POS lexicon: 'conll2003' (data dir) or a file; unused if p_pos=0

    def __post_init__(self):
        if self.embeddings not in ("teacher", "random"):
            raise ValueError(f"embeddings: {self.embeddings!r} is not 'teacher' or 'random'")
        if self.n_aug < 0 or not 0 <= self.alpha <= 1:
            raise ValueError("n_aug must be >= 0 and alpha in [0, 1]")
        if min(self.p_mask, self.p_pos, self.p_ng) < 0 or self.p_mask + self.p_pos > 1:
            raise ValueError("p_mask, p_pos, p_ng must be >= 0 and p_mask + p_pos <= 1")


# --------------------------------------------------------------------------- the student

def compact(ids: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the kept tokens of each row to the front: (ids, mask), both (B, T_kept)."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # (B, T) kept first
    width = max(1, int(keep.sum(1).max()))
    return ids.gather(1, order)[:, :width], keep.gather(1, order)[:, :width]


@rebuild_step
class BiLSTMStudent(nn.Module):
    # what the onnxruntime column says (compressbench.runtimes.onnxruntime.export_reason)
    onnx_unsupported = ("packed sequences (the BiLSTM skips padding with pack_padded_sequence) "
                        "are not exported to ONNX; it runs in PyTorch only")

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, mlp_size: int,
                 num_labels: int, kind: str, pair: bool, pad_id: int = 0):
        super().__init__()
        # kind: the task kind's name (kept so the saved model can be rebuilt)
        self.per_token = task_kind(kind).per_token
        self.pair, self.pad_id = pair, pad_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        if self.per_token:
            self.classifier = nn.Linear(2 * hidden_size, num_labels)
        else:
            features = 2 * hidden_size * (4 if pair else 1)
            self.classifier = nn.Sequential(nn.Linear(features, mlp_size), nn.ReLU(),
                                            nn.Linear(mlp_size, num_labels))

    def run(self, ids: torch.Tensor, mask: torch.Tensor):
        """LSTM over each row's real tokens: (states (B, T, 2H), final states (B, 2H))."""
        lengths = mask.sum(1).clamp_min(1).cpu()  # (B,)
        x = self.embedding(ids)  # (B, T, E)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16/fp16 LSTM for every shape: under CPU mixed precision the
            # LSTM runs in fp32 (its output is cast back by autocast's next op)
            with torch.autocast("cpu", enabled=False):
                return self.run_lstm(x.float(), lengths, ids.shape[1])
        return self.run_lstm(x, lengths, ids.shape[1])

    def run_lstm(self, x: torch.Tensor, lengths: torch.Tensor, width: int):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)  # h: (2, B, H), forward and backward final states
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=width)
        return states, torch.cat([h[0], h[1]], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        mask = (attention_mask if attention_mask is not None
                else input_ids != self.pad_id).bool()  # (B, T)
        if self.per_token:
            states, _ = self.run(input_ids, mask)
            return self.classifier(states)  # (B, T, C)
        if not self.pair:
            return self.classifier(self.run(input_ids, mask)[1])  # (B, C)
        segment = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        h1 = self.run(*compact(input_ids, mask & (segment == 0)))[1]  # (B, 2H) first sentence
        h2 = self.run(*compact(input_ids, mask & (segment == 1)))[1]  # (B, 2H) second sentence
        return self.classifier(torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1))  # (B, C)


# --------------------------------------------------------------------------- augmentation

def augment(examples: list[Example], kind, p: Params, mask_token: str, seed: int,
            data_dir) -> list[Example]:
    """``p.n_aug`` copies per example by Tang et al.'s rules (:mod:`compressbench.augment`,
    shared with every method's transfer set)."""
    rules = TangOptions(p.p_mask, p.p_pos, p.p_ng, p.lexicon)
    lexicon = (Lexicon.read(lexicon_path(p.lexicon, data_dir, "bilstm"), "bilstm.lexicon")
               if p.p_pos > 0 else None)
    return tang_copies(examples, kind, rules, p.n_aug, lexicon, mask_token, seed)


# --------------------------------------------------------------------------- the method

def teacher_labels(feats: list[dict], logits: list[torch.Tensor], kind) -> list[dict]:
    """Attach the teacher's logits, and its predictions as the hard labels."""
    kind = task_kind(kind)
    return [{**f, "labels": kind.hard_label(z, f), "teacher_logits": z}
            for f, z in zip(feats, logits)]


def bilstm_loss(kind, alpha: float):
    def loss_fn(model, batch):
        logits = logits_of(model(**forward_kwargs(model, batch)))  # (B, C) or (B, T, C)
        sq = ((logits - batch["teacher_logits"]) ** 2).mean(-1)  # (B,) or (B, T)
        mse = masked_mean(sq, label_mask(kind, batch["labels"]))
        if alpha == 0:
            return mse
        hard = task_loss(kind, logits, batch["labels"])
        return alpha * hard + (1 - alpha) * mse, {"mse": mse.item(), "hard": hard.item()}
    return loss_fn


class BiLSTM(Method):
    name = "bilstm"
    version = "2"  # 2: saved as weights plus a recipe, not a pickle
    Params = Params
    description = "Tang et al. 2019: BiLSTM student, MSE on logits, augmented transfer set"
    training_defaults: ClassVar[dict] = {"learning_rate": 1e-3}  # an LSTM from scratch
    uses_transfer = True  # a `training.transfer` set joins its n_aug copies

    def check(self, params: Params, facts) -> None:
        if params.n_aug > 0 and params.p_pos > 0:
            if facts.data is None and params.lexicon == "conll2003":
                return  # validate --no-data: the data directory is not looked at
            lexicon_path(params.lexicon, facts.data_dir, f"{facts.where}")

    def uses_teacher(self, params: Params) -> bool:
        """``alpha: 1`` (hard labels only) with ``n_aug: 0`` (no examples the teacher labels)
        is the BiLSTM trained on labels alone, the baseline of the distilled one."""
        return params.alpha < 1 or params.n_aug > 0

    def build(self, ctx, params: Params):
        task = ctx.task
        teacher = ctx.teacher()
        pair = not task.kind.per_token and bool(ctx.data.train) and \
            ctx.data.train[0].text_b is not None
        if params.embeddings == "teacher":
            table = teacher.get_input_embeddings().weight.detach()  # (V, H_t)
            dim = table.shape[1]
        else:
            table, dim = None, params.embedding_dim
        shape = {"vocab_size": len(ctx.tokenizer), "embedding_dim": dim,
                 "hidden_size": params.hidden_size, "mlp_size": params.mlp_size,
                 "num_labels": task.num_labels, "kind": task.kind.name, "pair": pair,
                 "pad_id": ctx.pad_id}
        student = built_by(BiLSTMStudent(**shape), BiLSTMStudent, **shape)
        if table is not None:
            student.embedding.weight.data.copy_(table[:len(ctx.tokenizer)])
        ctx.describe_student(student, **{k: v for k, v in shape.items() if k != "pad_id"},
                             init="fine-tuned teacher's embeddings" if table is not None
                             else "random")
        del teacher
        if not self.uses_teacher(params):  # labels only: the BiLSTM's own baseline
            ctx.train(student, lambda model, batch: task_loss(
                task.kind, logits_of(model(**forward_kwargs(model, batch))), batch["labels"]),
                description=f"{task.name} bilstm (labels only)")
            return student
        # the labelled examples, any `training.transfer` set, then the method's own n_aug copies
        # (all labelled by the teacher; the hard term reads its predictions off the labels)
        transfer = [{k: v for k, v in f.items() if k != "labelled"}
                    for f in ctx.transfer_set()]
        if params.n_aug > 0:
            new = augment(ctx.data.train, task.kind, params, ctx.tokenizer.mask_token,
                          ctx.seed, ctx.data_dir)
            feats = encode(task, ctx.tokenizer, new, ctx.training.max_seq_length)
            transfer = transfer + teacher_labels(feats, ctx.teacher_logits(feats), task.kind)
        ctx.emit("transfer_set", {"original": len(ctx.data.train), "total": len(transfer)})
        ctx.train(student, bilstm_loss(task.kind, params.alpha),
                  description=f"{task.name} bilstm", feats=transfer)
        return student


@hookimpl
def register_methods(register):
    register(BiLSTM())
