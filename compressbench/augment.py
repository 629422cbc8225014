"""Augmentation rules: new copies of labelled examples for the teacher to label (a transfer
set). Each rule is a plugin registered through ``register_augmenters``; ``tang`` is built in.

Built in: ``tang`` and ``tinybert`` (below). An augmenter has ``name``, ``description``, ``Options`` (a dataclass: its settings, written in a
suite as ``transfer: {augment: {rules: NAME, copies: N, options: {...}}}``), ``check(options,
data_dir, where)`` (raise :class:`ConfigError` naming ``where`` when it cannot run, e.g. a
missing lexicon) and ``augment(examples, kind, options, copies, seed, ctx) -> list[Example]``
(``ctx``: the step's :class:`~compressbench.method.Context`, for the tokenizer's mask token,
the data directory or the teacher). Labels of the new examples are placeholders: the teacher
labels them.

``tang`` (Tang et al. 2019 §3.2, "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks"): each word is masked with ``p_mask``, else replaced by a word with the same
part of speech with ``p_pos`` (POS from a lexicon: CoNLL-2003's training file in the data
directory, or a file of ``word TAG`` lines), and with ``p_ng`` the example is cut to a random
n-gram (n in 1..5). Token tasks keep every word in place, so they get no n-gram sampling.

``tinybert`` (Jiao et al. 2019 §3.3): each word that is a single WordPiece token is replaced,
with probability ``p`` (0.4), by one of its ``neighbours`` (15) nearest whole-word tokens by the
cosine of the teacher's input embeddings. The paper takes BERT-MLM predictions for such words
and GloVe neighbours for the others; neither is available offline, so the teacher's own
embeddings stand in and multi-piece words are kept.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from compressbench import kinds
from compressbench.errors import ConfigError
from compressbench.hookspecs import hookimpl
from compressbench.tasks import Example


class Lexicon:
    """word -> its most frequent POS tag; tag -> words with their counts (for sampling)."""

    def __init__(self, counts: dict[str, Counter]):
        self.tag = {w: c.most_common(1)[0][0] for w, c in counts.items()}
        by_tag: dict[str, Counter] = defaultdict(Counter)
        for w, c in counts.items():
            by_tag[self.tag[w]][w] += sum(c.values())
        self.words = {t: (list(c), list(c.values())) for t, c in by_tag.items()}

    def replace(self, word: str, rng: random.Random) -> str:
        """A word of the same part of speech as ``word``, drawn by its corpus frequency;
        ``word`` itself when the lexicon does not know it."""
        tag = self.tag.get(word.lower())
        if tag is None:
            return word
        words, weights = self.words[tag]
        return rng.choices(words, weights)[0]  # the unigram distribution within the tag

    @classmethod
    def read(cls, path: Path, where: str = "lexicon") -> Lexicon:
        """CoNLL column files (word POS ...) or 'word<TAB>TAG' lines."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for line in path.read_text(encoding="utf-8").splitlines():
            cols = line.split()
            if len(cols) < 2 or cols[0] == "-DOCSTART-":
                continue
            counts[cols[0].lower()][cols[1]] += 1
        if not counts:
            raise ConfigError(f"{where}: {path}: no 'word TAG' lines found")
        return cls(counts)


def lexicon_path(spec: str, data_dir: Path | None, where: str) -> Path:
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


@dataclass(frozen=True)
class TangOptions:
    p_mask: float = 0.1  # Tang et al. 2019 §3.2
    p_pos: float = 0.1  # Tang et al. 2019 §3.2
    p_ng: float = 0.25  # Tang et al. 2019 §3.2
    lexicon: str = "conll2003"  # POS lexicon: 'conll2003' (data dir) or a file; unused if p_pos=0

    def __post_init__(self):
        if min(self.p_mask, self.p_pos, self.p_ng) < 0 or self.p_mask + self.p_pos > 1:
            raise ValueError("p_mask, p_pos, p_ng must be >= 0 and p_mask + p_pos <= 1")


def augment_words(words: list[str], rng: random.Random, p: TangOptions, lexicon: Lexicon | None,
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


def copies_of(examples: list[Example], kind, copies: int, seed: int, rewrite) -> list[Example]:
    """``copies`` new copies per example, each text rewritten word by word by
    ``rewrite(words, rng, whole_sentence)`` (``whole_sentence`` False for token tasks, whose
    words keep their places); copies equal to the original or to an earlier copy are dropped.
    Labels stay the original's: placeholders, replaced by the teacher's."""
    rng = random.Random(seed)
    per_token = kinds.get(kind).per_token
    out = []
    for ex in examples:
        seen = set()
        for _ in range(copies):
            if per_token:  # a list of words with one tag each
                new = Example(rewrite(list(ex.text_a), rng, False), None, ex.label)
            else:
                a = " ".join(rewrite(ex.text_a.split(), rng, True))
                b = None if ex.text_b is None else " ".join(rewrite(ex.text_b.split(), rng, True))
                new = Example(a, b, ex.label)
            key = (str(new.text_a), new.text_b)
            if key in seen or (new.text_a == ex.text_a and new.text_b == ex.text_b):
                continue
            seen.add(key)
            out.append(new)
    return out


def tang_copies(examples: list[Example], kind, p: TangOptions, copies: int,
                lexicon: Lexicon | None, mask_token: str, seed: int) -> list[Example]:
    """``copies`` new copies per example by Tang et al.'s rules (see :func:`copies_of`)."""
    return copies_of(examples, kind, copies, seed,
                     lambda words, rng, ngrams: augment_words(words, rng, p, lexicon,
                                                              mask_token, ngrams))


class Tang:
    name = "tang"
    description = "Tang et al. 2019 §3.2: masking, POS-guided replacement, n-gram sampling"
    Options = TangOptions

    def check(self, options: TangOptions, data_dir: Path | None, where: str) -> None:
        if options.p_pos > 0:
            lexicon_path(options.lexicon, data_dir, where)

    def augment(self, examples: list[Example], kind, options: TangOptions, copies: int,
                seed: int, ctx) -> list[Example]:
        lexicon = (Lexicon.read(lexicon_path(options.lexicon, ctx.data_dir, "augment.options"))
                   if options.p_pos > 0 else None)
        return tang_copies(examples, kind, options, copies, lexicon, ctx.tokenizer.mask_token,
                           seed)


@dataclass(frozen=True)
class TinyBertOptions:
    p: float = 0.4  # Jiao et al. 2019 §3.3 / reference code: p_t = 0.4, per word
    neighbours: int = 15  # K = 15 candidates per word

    def __post_init__(self):
        if not 0 <= self.p <= 1 or self.neighbours < 1:
            raise ValueError("p must be in [0, 1] and neighbours at least 1")


class Neighbours:
    """The K nearest whole-word WordPiece tokens of a token, by the cosine of the teacher's
    input embeddings (computed per token on first use)."""

    def __init__(self, embeddings, tokenizer, k: int):
        import torch.nn.functional as F

        self.unit = F.normalize(embeddings.detach().float(), dim=-1)  # (V, H)
        vocab = tokenizer.convert_ids_to_tokens(list(range(self.unit.shape[0])))
        special = set(tokenizer.all_special_tokens)
        self.words = [not (t.startswith("##") or t.startswith("[") or t in special)
                      for t in vocab]  # whole words only, no [unused], [CLS], ...
        self.vocab, self.k, self.found = vocab, k, {}

    def of(self, token_id: int) -> list[str]:
        if token_id not in self.found:
            import torch
            sims = self.unit @ self.unit[token_id]  # (V,)
            sims[token_id] = -2.0
            sims[~torch.tensor(self.words)] = -2.0
            top = sims.topk(self.k).indices.tolist()
            self.found[token_id] = [self.vocab[i] for i in top]
        return self.found[token_id]


def tinybert_words(words: list[str], rng: random.Random, p: TinyBertOptions, tokenizer,
                   near: Neighbours) -> list[str]:
    """One copy: each word that is a single WordPiece token is replaced, with probability
    ``p``, by one of its K embedding neighbours; other words are kept."""
    out = []
    for word in words:
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        if len(ids) == 1 and near.words[ids[0]] and rng.random() < p.p:
            out.append(rng.choice(near.of(ids[0])))
        else:
            out.append(word)
    return out


class TinyBert:
    name = "tinybert"
    description = ("Jiao et al. 2019 §3.3: word replacement by the K nearest words; the "
                   "teacher's WordPiece embeddings stand in for BERT-MLM predictions and GloVe "
                   "(offline), so multi-piece words are kept")
    Options = TinyBertOptions

    def check(self, options: TinyBertOptions, data_dir: Path | None, where: str) -> None:
        return None  # needs only the teacher

    def augment(self, examples: list[Example], kind, options: TinyBertOptions, copies: int,
                seed: int, ctx) -> list[Example]:
        tok = ctx.tokenizer
        near = Neighbours(ctx.teacher().get_input_embeddings().weight, tok, options.neighbours)
        return copies_of(examples, kind, copies, seed,
                         lambda words, rng, _: tinybert_words(words, rng, options, tok, near))


@hookimpl
def register_augmenters(register) -> None:
    register(Tang())
    register(TinyBert())
