"""compressbench-multilabel: a task kind from outside the core, as a plugin package.

Multi-label classification: every example has any number of labels out of C (a news snippet
about sports *and* politics). It differs from the built-in kinds in every place a kind owns:

- labels are multi-hot vectors, (B, C) floats in a batch; the head has one sigmoid per label
  (transformers' ``problem_type="multi_label_classification"``);
- task loss: binary cross-entropy per label; soft-target loss: the binary KL divergence per
  label between the teacher's and the student's sigmoids at temperature T, times T^2 (Hinton
  et al.'s loss with C independent two-class distributions);
- prediction: every label whose logit is above 0; scoring: micro-F1, macro-F1 and exact match;
- agreement between runtimes: the share of (example, label) decisions that agree;
- bootstrap: micro-F1 from per-example counts, resampled by example;
- error analysis: precision, recall and F1 per label; an example is right when its whole label
  set is.

It also registers a task, ``toy-topics`` (240 training and 80 dev snippets, 4 topics,
generated in code), so a suite can run it: ``tasks: [toy-topics]``. It imports only
``compressbench.api``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from compressbench import api

__version__ = "0.1.0"
TOPICS = ("sports", "politics", "science", "music")


class MultiLabel(api.TaskKind):
    name = "multilabel"
    description = "any number of labels per example; (B, C) logits, one sigmoid per label"
    metrics = ("micro_f1", "macro_f1", "exact_match")
    default_metrics = ("micro_f1", "macro_f1", "exact_match")
    checked_metric = "micro_f1"
    unit = "labels"
    analysis_text = "per label (precision, recall, F1); no confusion matrix"
    flip_text = "examples whose label set the teacher gets exactly right and the method does not"
    problem_type = "multi_label_classification"

    # ------------------------------------------------------------------ data and scoring

    def label_value(self, label):
        import torch
        return torch.tensor(label, dtype=torch.float)  # (C,) multi-hot

    def score(self, task, gold, predictions) -> dict:
        from sklearn.metrics import f1_score
        y, p = np.asarray(gold, dtype=int), np.asarray(predictions, dtype=int)  # (N, C)
        per = f1_score(y, p, average=None, zero_division=0)
        out = {"micro_f1": float(f1_score(y, p, average="micro", zero_division=0)),
               "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
               "exact_match": float((y == p).all(1).mean())}
        out = {k: v for k, v in out.items() if k in task.metrics or k == "macro_f1"}
        out["per_class_f1"] = {n: float(v) for n, v in zip(task.labels, per)}
        return out

    # ------------------------------------------------------------------ training

    def task_loss(self, logits, labels):
        import torch.nn.functional as F
        return F.binary_cross_entropy_with_logits(logits, labels.float())  # (B, C) vs (B, C)

    def soft_loss(self, student, teacher, temperature: float, mask=None):
        """T^2 * mean over labels of KL(Bernoulli(sigmoid(z_t/T)) || Bernoulli(sigmoid(z_s/T)))."""
        import torch.nn.functional as F
        t = temperature
        p_t = (teacher / t).sigmoid()  # (B, C)
        log_s1, log_s0 = F.logsigmoid(student / t), F.logsigmoid(-student / t)  # (B, C)
        log_t1, log_t0 = F.logsigmoid(teacher / t), F.logsigmoid(-teacher / t)  # (B, C)
        kl = p_t * (log_t1 - log_s1) + (1 - p_t) * (log_t0 - log_s0)  # (B, C)
        return t * t * kl.mean()

    def soft_cross_entropy(self, student, teacher, temperature: float, mask=None):
        """Binary cross-entropy against the teacher's sigmoids at temperature T."""
        import torch.nn.functional as F
        return F.binary_cross_entropy_with_logits(student / temperature,
                                                  (teacher / temperature).sigmoid())

    def kl_is_class_mean(self) -> bool:
        return False  # soft_loss already averages over the labels

    def predictions(self, logits, feats, idx) -> list:
        return (logits > 0).int().tolist()  # (B, C) 0/1

    def hard_label(self, logits, feature):
        return (logits > 0).float()  # (C,)

    # ------------------------------------------------------------------ runtimes

    def agreeing(self, x, y, mask):
        return x > 0, y > 0  # every (example, label) decision

    # ------------------------------------------------------------------ statistics

    def resample_metric(self, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
        g, p = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)  # (N, C)
        if metric == "exact_match":
            return (g == p).all(1)[idx].mean(1)
        tp, fp, fn = (g & p), (~g & p), (g & ~p)  # (N, C)
        if metric == "micro_f1":
            t, f1_, f2 = (x.sum(1)[idx].sum(1) for x in (tp, fp, fn))  # (b,)
            return safe_f1(t, f1_, f2)
        if metric == "macro_f1":
            per = [safe_f1(tp[:, c][idx].sum(1), fp[:, c][idx].sum(1), fn[:, c][idx].sum(1))
                   for c in range(g.shape[1])]
            return np.mean(per, axis=0)
        raise ValueError(f"no bootstrap for multilabel metric {metric!r}")

    def is_constant(self, pred) -> bool:
        rows = {tuple(r) for r in pred}
        return len(rows) <= 1

    def majority_baseline(self, metric: str, gold) -> tuple[float, str]:
        """The most frequent label set, predicted for every example."""
        from collections import Counter
        top, n = Counter(tuple(r) for r in gold).most_common(1)[0]
        idx = np.arange(len(gold))[None, :]
        score = float(self.resample_metric(metric, gold, [list(top)] * len(gold), idx)[0])
        return score, f"always the label set {list(top)} ({n / len(gold):.1%} of the split)"

    # ------------------------------------------------------------------ error analysis

    def errors(self, gold, preds, teacher, labels) -> dict:
        from sklearn.metrics import precision_recall_fscore_support
        y, p = np.asarray(gold, dtype=int), np.asarray(preds, dtype=int)
        pr, rc, f1, n = precision_recall_fscore_support(y, p, zero_division=0)
        per_class = [api.ClassStats(labels[i], float(pr[i]), float(rc[i]), float(f1[i]),
                                    int(n[i])) for i in range(len(labels))]
        right = [list(a) == list(b) for a, b in zip(gold, preds)]
        t_right = [list(a) == list(b) for a, b in zip(gold, teacher)] if teacher else None
        got = float(self.resample_metric("micro_f1", gold, preds,
                                         np.arange(len(gold))[None, :])[0])
        return {"per_class": per_class, "bands": [], "confusion": None, "got": got,
                "right": right, "wrong": [not r for r in right], "t_right": t_right,
                "t_wrong": [not r for r in t_right] if t_right else None}

    def example(self, labels, a, b, gold, teacher, pred) -> dict:
        def names(row):
            return ", ".join(n for n, on in zip(labels, row) if on) or "(none)"
        return {"text": a.strip(), "gold": names(gold), "teacher": names(teacher),
                "method": names(pred)}


def safe_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)


MULTILABEL = MultiLabel()


#: one sentence bank per topic; a snippet joins 1-3 sentences of distinct topics with " ; "
SENTENCES = {
    "sports": ("a marathon runner broke the record", "fans filled the stadium for the derby",
               "the coach praised the young goalkeeper", "the striker scored twice in the final",
               "the team won the league on penalties", "the tennis match went to five sets"),
    "politics": ("parliament passed the budget after a long debate",
                 "the minister resigned over the scandal", "the opposition called for an election",
                 "the president met foreign leaders", "the senate blocked the new law",
                 "voters turned out in record numbers"),
    "science": ("a new vaccine passed its clinical trial", "chemists built a faster battery",
                "physicists measured the particle mass",
                "researchers sequenced the genome of a rare plant", "the probe landed on a comet",
                "the telescope found a distant galaxy"),
    "music": ("a jazz trio opened the festival", "the band released a new album",
              "the choir sang at the cathedral", "the orchestra played a symphony by mahler",
              "the rapper topped the charts again", "the singer cancelled her world tour"),
}
SIZES = {"train": 240, "dev": 80}


def toy_topics(split: str) -> list:
    """The toy task's split, generated (seeded by the split's name; synthetic, not a
    benchmark's data): each snippet joins sentences of 1-3 distinct topics."""
    import random
    rng = random.Random(f"toy-topics/{split}")
    out = []
    for _ in range(SIZES["dev" if split == "dev" else "train"]):
        topics = rng.sample(TOPICS, rng.choice((1, 1, 2, 2, 3)))
        text = " ; ".join(rng.choice(SENTENCES[t]) for t in topics)
        out.append(api.Example(text, None, [int(t in topics) for t in TOPICS]))
    return out


def read_topics(path: Path) -> list:
    """A file of ``text<TAB>label|label...`` lines (a header first), e.g. your own data for
    the kind. A malformed line is set aside with a warning naming the file and line."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], start=2):
        fields = line.split("\t")
        names = fields[1].split("|") if len(fields) == 2 else []
        if len(fields) != 2 or not fields[0].strip() or any(n not in TOPICS for n in names):
            warnings.warn(f"{path}:{lineno}: not 'text<TAB>label|label' with labels from "
                          f"{', '.join(TOPICS)}; line set aside", stacklevel=2)
            continue
        out.append(api.Example(fields[0], None, [int(t in names) for t in TOPICS]))
    return out


def load_topics(split: str, _data_dir: Path | None) -> list:
    return toy_topics(split)


@api.hookimpl
def register_task_kinds(register):
    register(MULTILABEL)


@api.hookimpl
def register_tasks(register):
    register(api.Task(name="toy-topics", kind=MULTILABEL, labels=TOPICS,
                      metrics=MULTILABEL.default_metrics, load_split=load_topics,
                      description="toy multi-label topics (compressbench-multilabel example)"))
