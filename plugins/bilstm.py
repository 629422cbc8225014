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
The student is saved as weights plus a recipe naming ``BiLSTMStudent`` and its arguments
(``compressbench.built_by``), so loading it runs no pickle.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from compressbench.api import (
    ConfigError,
    Example,
    Method,
    built_by,
    encode,
    forward_kwargs,
    hookimpl,
    label_mask,
    logits_of,
    masked_mean,
    rebuild_step,
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

class Lexicon:
    """word -> its most frequent POS tag; tag -> words with their counts (for sampling)."""

    def __init__(self, counts: dict[str, Counter]):
        self.tag = {w: c.most_common(1)[0][0] for w, c in counts.items()}
        by_tag: dict[str, Counter] = defaultdict(Counter)
        for w, c in counts.items():
            by_tag[self.tag[w]][w] += sum(c.values())
        self.words = {t: (list(c), list(c.values())) for t, c in by_tag.items()}

    def replace(self, word: str, rng: random.Random) -> str:
        tag = self.tag.get(word.lower())
        if tag is None:
            return word
        words, weights = self.words[tag]
        return rng.choices(words, weights)[0]  # the unigram distribution within the tag

    @classmethod
    def read(cls, path: Path) -> Lexicon:
        """CoNLL column files (word POS ...) or 'word<TAB>TAG' lines."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for line in path.read_text(encoding="utf-8").splitlines():
            cols = line.split()
            if len(cols) < 2 or cols[0] == "-DOCSTART-":
                continue
            counts[cols[0].lower()][cols[1]] += 1
        if not counts:
            raise ConfigError(f"bilstm.lexicon: {path}: no 'word TAG' lines found")
        return cls(counts)


def lexicon_path(spec: str, data_dir: Path | None, where: str = "bilstm") -> Path:
    """The POS lexicon file ``lexicon:`` names, else a ConfigError naming the fix."""
    if spec == "conll2003":
        if data_dir is not None:
            for name in ("conll2003/train.txt", "conll2003/eng.train",
                         "conll2003/original_iob1/eng.train"):
                if (Path(data_dir) / name).is_file():
                    return Path(data_dir) / name
        raise ConfigError(f"{where}.lexicon: 'conll2003' (the default) needs "
                          f"conll2003/train.txt in the data directory (--data-dir), which "
                          f"{'is not given' if data_dir is None else f'{data_dir} lacks'}; "
                          f"give `lexicon:` a file of 'word TAG' lines, or set p_pos: 0")
    if not Path(spec).is_file():
        raise ConfigError(f"{where}.lexicon: {spec}: no such file (CoNLL columns or 'word TAG' "
                          f"lines)")
    return Path(spec)


def augment_words(words: list[str], rng: random.Random, p: Params, lexicon: Lexicon | None,
                  mask_token: str, ngrams: bool) -> list[str]:
    """One augmented copy (Tang et al. 2019 §3.2): masking, POS-guided replacement, n-grams."""
    out = []
    for word in words:
        x = rng.random()
        if x < p.p_mask:
            out.append(mask_token)
        elif x < p.p_mask + p.p_pos and lexicon is not None:
            out.append(lexicon.replace(word, rng))
        else:
            out.append(word)
    if ngrams and len(out) > 1 and rng.random() < p.p_ng:
        n = rng.randint(1, min(5, len(out)))
        start = rng.randint(0, len(out) - n)
        out = out[start:start + n]
    return out


def augment(examples: list[Example], kind, p: Params, lexicon: Lexicon | None,
            mask_token: str, seed: int) -> list[Example]:
    """``p.n_aug`` new copies per example (duplicates of the original dropped); labels are
    placeholders, replaced by the teacher's."""
    rng = random.Random(seed)
    out = []
    for ex in examples:
        seen = set()
        for _ in range(p.n_aug):
            if task_kind(kind).per_token:  # a list of words with one tag each
                words = augment_words(list(ex.text_a), rng, p, lexicon, mask_token, False)
                new = Example(words, None, ex.label)
            else:
                a = " ".join(augment_words(ex.text_a.split(), rng, p, lexicon, mask_token, True))
                b = (None if ex.text_b is None else
                     " ".join(augment_words(ex.text_b.split(), rng, p, lexicon, mask_token, True)))
                new = Example(a, b, ex.label)
            key = (str(new.text_a), new.text_b)
            if key in seen or (new.text_a == ex.text_a and new.text_b == ex.text_b):
                continue
            seen.add(key)
            out.append(new)
    return out


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

    def check(self, params: Params, facts) -> None:
        if params.n_aug > 0 and params.p_pos > 0:
            if facts.data is None and params.lexicon == "conll2003":
                return  # validate --no-data: the data directory is not looked at
            lexicon_path(params.lexicon, facts.data_dir, facts.where)

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
        transfer = ctx.with_teacher_logits("train")
        if params.n_aug > 0:
            lexicon = (Lexicon.read(lexicon_path(params.lexicon, ctx.data_dir))
                       if params.p_pos > 0 else None)
            new = augment(ctx.data.train, task.kind, params, lexicon, ctx.tokenizer.mask_token,
                          ctx.seed)
            feats = encode(task, ctx.tokenizer, new, ctx.training.max_seq_length)
            transfer = transfer + teacher_labels(feats, ctx.teacher_logits(feats), task.kind)
        ctx.emit("transfer_set", {"original": len(ctx.data.train), "total": len(transfer)})
        ctx.train(student, bilstm_loss(task.kind, params.alpha),
                  description=f"{task.name} bilstm", feats=transfer)
        return student


@hookimpl
def register_methods(register):
    register(BiLSTM())
