"""Token classification: one tag per word (CoNLL-2003 NER, BIO tags); (B, T, C) logits, scored
per entity with seqeval, resampled by sentence."""
from __future__ import annotations

import numpy as np

from compressbench.kinds.analysis import entity_classes, entity_stats, same_entities
from compressbench.kinds.base import TaskKind
from compressbench.kinds.resampling import entity_counts, safe_div

IGNORE = -100  # label id ignored by the loss (sub-word continuations, special tokens)


class TokenClassification(TaskKind):
    name = "token"
    description = ("one tag per word (NER); (B, T, C) logits, the loss on each word's first "
                   "sub-word, entity-level F1 per sentence")
    per_token = True
    metrics = ("f1", "precision", "recall", "accuracy")
    default_metrics = ("f1", "precision", "recall", "accuracy")
    checked_metric = "f1"
    unit = "entities"
    analysis_text = ("per entity type (seqeval, CoNLL evaluation), with a confusion matrix of "
                     "entity types per word (B-/I- merged)")
    flip_text = ("sentences where the teacher finds exactly the gold entities and the method "
                 "does not")

    def encode(self, tokenizer, examples, max_length: int) -> list[dict]:
        """Per word list, the sub-words' ids; ``labels`` on each word's first sub-word (IGNORE
        elsewhere) and ``word_starts``: the index of each word's first sub-word (or -1 when
        truncated away), to score at the word level."""
        return [encode_words(tokenizer, ex, max_length) for ex in examples]

    def score(self, task, gold, predictions) -> dict:
        from compressbench import metrics as M
        names = task.labels
        return M.token_classification([[names[t] for t in s] for s in gold],
                                      [[names[t] for t in s] for s in predictions])

    def auto_class(self):
        import transformers
        return transformers.AutoModelForTokenClassification

    def label_mask(self, labels):
        return labels != IGNORE  # (B, T) bool

    def task_loss(self, logits, labels):
        import torch.nn.functional as F
        # logits (B, T, C), labels (B, T) with IGNORE on sub-word continuations
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)

    def predictions(self, logits, feats, idx) -> list:
        tags = logits.argmax(-1).tolist()  # (B, T)
        return [[tags[j][s] if s >= 0 else 0 for s in feats[i]["word_starts"]]
                for j, i in enumerate(idx)]

    def placeholder_label(self, example) -> list[int]:
        return [0] * len(example.text_a)  # one tag per word; only the word starts are kept

    def hard_label(self, logits, feature) -> list[int]:
        """The teacher's tag on every labelled position (IGNORE kept)."""
        return [lab if lab < 0 else int(i) for lab, i in zip(feature["labels"],
                                                             logits.argmax(-1))]

    def onnx_logits_axes(self) -> dict[int, str]:
        return {0: "batch", 1: "sequence"}

    def agreeing(self, x, y, mask):
        """Tags of real tokens."""
        keep = mask.astype(bool)
        return x.argmax(-1)[keep], y.argmax(-1)[keep]

    def decode(self, values, labels) -> list:
        return [[labels[t] for t in s] for s in values]

    def resample_metric(self, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
        """Resampled by sentence: entity counts (or tokens) summed over each resample."""
        if metric in ("f1", "precision", "recall"):
            counts = entity_counts(gold, pred)[idx].sum(1)  # (b, 3)
            tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
            if metric == "precision":
                return safe_div(tp, tp + fp)
            if metric == "recall":
                return safe_div(tp, tp + fn)
            return safe_div(2 * tp, 2 * tp + fp + fn)
        if metric == "accuracy":
            per = np.array([[sum(a == b for a, b in zip(g, p)), len(g)]
                            for g, p in zip(gold, pred)], dtype=float)[idx].sum(1)
            return safe_div(per[:, 0], per[:, 1])
        raise ValueError(f"no bootstrap for token metric {metric!r}")

    def is_constant(self, pred) -> bool:
        return len({t for s in pred for t in s}) <= 1

    def majority_baseline(self, metric: str, gold) -> tuple[float, str]:
        outside = [["O"] * len(s) for s in gold]
        idx = np.arange(len(gold))[None, :]
        return float(self.resample_metric(metric, gold, outside, idx)[0]), "every token tagged O"

    def class_names(self, labels) -> list[str]:
        return entity_classes(labels)

    def errors(self, gold, preds, teacher, labels) -> dict:
        """Per entity type; a sentence is right when it has exactly the gold entities."""
        per_class, confusion, got = entity_stats(gold, preds, labels)
        right = [same_entities(g, p, labels) for g, p in zip(gold, preds)]
        t_right = [same_entities(g, p, labels) for g, p in zip(gold, teacher)] \
            if teacher else None
        return {"per_class": per_class, "bands": [], "confusion": confusion, "got": got,
                "right": right, "wrong": [not r for r in right], "t_right": t_right,
                "t_wrong": [not r for r in t_right] if t_right else None}

    def example(self, labels, a, b, gold, teacher, pred) -> dict:
        return {"text": " ".join(a), "gold": entities(a, gold, labels),
                "teacher": entities(a, teacher, labels), "method": entities(a, pred, labels)}


def encode_words(tokenizer, ex, max_length: int) -> dict:
    enc = tokenizer(ex.text_a, is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = enc.word_ids()
    labels, starts, prev = [], [-1] * len(ex.text_a), None
    for pos, w in enumerate(word_ids):
        if w is None or w == prev:
            labels.append(IGNORE)
        else:
            labels.append(ex.label[w])
            starts[w] = pos
        prev = w
    f = {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}
    f["labels"] = labels
    f["word_starts"] = starts
    return f


def entities(words: list[str], ids: list[int], labels: list[str]) -> str:
    """The entities of a tagged sentence, readable: 'Paris (LOC); EU (ORG)'."""
    from seqeval.metrics.sequence_labeling import get_entities

    found = get_entities([labels[t] for t in ids])
    return "; ".join(f"{' '.join(words[s:e + 1])} ({kind})" for kind, s, e in found) or "(none)"
