"""The base of every task kind (see :mod:`compressbench.kinds`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compressbench.errors import ConfigError, did_you_mean


class TaskKind:
    """The base of every task kind. Subclasses set ``name`` and override what differs; the
    defaults are those of sequence-level classification (one (B, C) logit row per example)."""

    #: the name used in YAML (``kind:`` of a user task), records and reports
    name: str = ""
    description: str = ""
    #: logits per token, (B, T, C), rather than per example, (B, C)
    per_token: bool = False
    #: the labels are class names (a user file's classes are read from its training data)
    has_classes: bool = True
    #: a user's CSV/TSV/JSON file (one example per row: text columns and a label) can hold it
    user_files: bool = False
    #: the metrics a task of this kind may name; the default when it names none
    metrics: tuple[str, ...] = ()
    default_metrics: tuple[str, ...] = ()
    #: the metric the error analysis recomputes to check the predictions it reads
    checked_metric: str = "accuracy"
    #: what one prediction is called in the report's examples table
    unit: str = "label"
    #: the report's error analysis: what it shows, and what "teacher right -> wrong" counts
    analysis_text: str = "per class, with a confusion matrix"
    flip_text: str = "examples the teacher gets right and the method gets wrong"

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"

    def __eq__(self, other: object) -> bool:  # the same kind after a trip to a worker process
        return type(other) is type(self) and other.name == self.name

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def registered(self) -> None:
        """Called when a plugin manager registers this kind: records, saved models and
        reference files, which store its name, find it again in this process."""
        _SEEN.setdefault(self.name, self)

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------------ data

    def num_labels(self, labels: Sequence[str]) -> int:
        """Outputs of the head for a task with these class (or tag) names."""
        return len(labels)

    def check_task(self, task, where: str) -> None:
        """Raise :class:`ConfigError` (naming ``where``) if ``task`` cannot be run as this
        kind; by default, its metrics must be this kind's."""
        unknown = [m for m in task.metrics if m not in self.metrics]
        if unknown:
            raise ConfigError(f"{where}.metrics: {unknown[0]!r} is not a {self.name} metric."
                              f"{did_you_mean(unknown[0], self.metrics)} Allowed: "
                              f"{', '.join(self.metrics)}")

    def label_value(self, label: Any) -> Any:
        """An example's label as it enters a batch (an int class id by default)."""
        return int(label)

    def encode(self, tokenizer, examples: list, max_length: int) -> list[dict]:
        """One dict of python lists per example (``input_ids``, ``token_type_ids``,
        ``labels``)."""
        a = [ex.text_a for ex in examples]
        b = [ex.text_b for ex in examples] if examples and examples[0].text_b is not None \
            else None
        enc = tokenizer(a, b, truncation=True, max_length=max_length)
        feats = []
        for i, ex in enumerate(examples):
            f = {k: enc[k][i] for k in ("input_ids", "token_type_ids") if k in enc}
            f["labels"] = self.label_value(ex.label)
            feats.append(f)
        return feats

    def placeholder_label(self, example) -> Any:
        """A label for an example that has none (a transfer set's), so it can be encoded; the
        teacher's label (:meth:`hard_label`) replaces it. A class id by default."""
        return 0

    def score(self, task, gold: Sequence[Any], predictions: Sequence[Any]) -> dict:
        """The task's metrics for ``predictions`` against the ``gold`` labels."""
        raise NotImplementedError

    # ------------------------------------------------------------------ model

    def auto_class(self):
        """The transformers auto class whose head this kind trains."""
        import transformers
        return transformers.AutoModelForSequenceClassification

    #: ``config.problem_type`` for transformers' heads (None: their default)
    problem_type: str | None = None

    # ------------------------------------------------------------------ training

    def label_mask(self, labels):
        """The positions that carry a label, (B, T) bool, for per-token kinds; else None."""
        return

    def task_loss(self, logits, labels):
        """The loss against gold labels: cross-entropy. logits (B, C), labels (B,)."""
        import torch.nn.functional as F
        return F.cross_entropy(logits, labels)

    def soft_loss(self, student, teacher, temperature: float, mask=None):
        """T^2 * KL(teacher || student) at temperature T (Hinton et al. 2015 §2), averaged over
        examples (or masked tokens)."""
        import torch.nn.functional as F
        t = temperature
        log_p_s = F.log_softmax(student / t, dim=-1)  # (B, C) or (B, T, C)
        log_p_t = F.log_softmax(teacher / t, dim=-1)  # (B, C) or (B, T, C)
        kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1)  # (B,)/(B, T)
        return t * t * masked_mean(kl, mask)

    def soft_cross_entropy(self, student, teacher, temperature: float, mask=None):
        """-sum softmax(z_t/T) log softmax(z_s/T) (TinyBERT's prediction-layer loss, no T^2)."""
        import torch.nn.functional as F
        p_t = F.softmax(teacher / temperature, dim=-1)  # (B, C) or (B, T, C)
        log_p_s = F.log_softmax(student / temperature, dim=-1)  # (B, C) or (B, T, C)
        return masked_mean(-(p_t * log_p_s).sum(-1), mask)  # (B,) / (B, T) -> scalar

    def kl_is_class_mean(self) -> bool:
        """Whether ``nn.KLDivLoss(reduction='mean')`` over these logits divides by the class
        count too (PKD's reference implementation uses it): true for class distributions."""
        return True

    def predictions(self, logits, feats: list[dict], idx: list[int]) -> list:
        """Predictions from a batch's logits (float, on the CPU); ``feats``/``idx``: the
        batch's examples. Class ids, (B, C) -> (B,)."""
        return logits.argmax(-1).tolist()

    def hard_label(self, logits, feature: dict) -> Any:
        """The label a teacher's logits for one example stand for (as a batch's ``labels``)."""
        return int(logits.argmax(-1))

    # ------------------------------------------------------------------ runtimes

    def onnx_logits_axes(self) -> dict[int, str]:
        """The dynamic axes of the exported model's ``logits`` output."""
        return {0: "batch"}

    def onnx_input_axes(self) -> dict[int, str]:
        """The dynamic axes of the exported model's inputs (``input_ids``, ...): (B, T)."""
        return {0: "batch", 1: "sequence"}

    def shape_inputs(self, ids):
        """A (B, T) tensor of token ids as this kind's model reads them (exports and checks
        run the model on it): unchanged, (B, T)."""
        return ids

    def agreement(self, a: list[np.ndarray], b: list[np.ndarray],
                  masks: list[np.ndarray]) -> dict:
        """How far ``b``'s logits are from ``a``'s: the largest absolute difference, and the
        fraction of predictions that agree (``masks``: the batches' attention masks)."""
        same = total = 0
        for x, y, m in zip(a, b, masks):
            px, py = self.agreeing(x, y, m)
            same += int((px == py).sum())
            total += int(px.size)
        return {"examples": int(sum(len(x) for x in a)), "max_abs_logit_diff": max_diff(a, b),
                "prediction_agreement": same / total if total else None}

    def agreeing(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray):
        """The two predictions compared by :meth:`agreement`: classes."""
        return x.argmax(-1), y.argmax(-1)

    # ------------------------------------------------------------------ statistics

    def decode(self, values: list, labels: Sequence[str]) -> list:
        """Stored gold labels or predictions (ids) as the statistics below read them."""
        return values

    def resample_metric(self, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
        """``metric`` on every bootstrap resample (rows of ``idx``, indices of the resampling
        unit: examples here): a (b,) array."""
        raise NotImplementedError

    def is_constant(self, pred) -> bool:
        """The predictions are one class (or value) throughout."""
        values = np.asarray(pred, dtype=float)
        return values.size == 0 or float(np.ptp(values)) < 1e-9

    def majority_baseline(self, metric: str, gold) -> tuple[float, str]:
        """The main metric of the best constant prediction, with a description."""
        g = np.asarray(gold)
        values, counts = np.unique(g, return_counts=True)
        top = values[np.argmax(counts)]
        idx = np.arange(len(g))[None, :]
        score = float(self.resample_metric(metric, g, np.full_like(g, top), idx)[0])
        return score, f"always class {top} ({counts.max() / len(g):.1%} of the split)"

    # ------------------------------------------------------------------ error analysis

    def class_names(self, labels: list[str]) -> list[str]:
        """The classes the error analysis reports per class."""
        return list(labels)

    def errors(self, gold, preds, teacher, labels: list[str]) -> dict:
        """The error analysis of one model's predictions: ``per_class`` (precision, recall,
        F1 per class), ``bands`` (regression), ``confusion``, ``got`` (the checked metric
        recomputed), ``right``/``wrong`` per example and the same for the teacher."""
        from compressbench.kinds.analysis import class_stats  # noqa: PLC0415
        per_class, confusion = class_stats(gold, preds, labels)
        got = sum(int(a == b) for a, b in zip(gold, preds)) / len(gold)
        right = [g == p for g, p in zip(gold, preds)]
        t_right = [g == p for g, p in zip(gold, teacher)] if teacher else None
        return {"per_class": per_class, "bands": [], "confusion": confusion, "got": got,
                "right": right, "wrong": [not r for r in right], "t_right": t_right,
                "t_wrong": [not r for r in t_right] if t_right else None}

    def example(self, labels: list[str], a: Any, b: Any, gold, teacher, pred) -> dict:
        """One example of the report's examples table (``a``, ``b``: its texts), its
        predictions readable."""
        return {"text": pair_text(a, b), "gold": labels[gold], "teacher": labels[teacher],
                "method": labels[pred]}


def pair_text(a: str, b: str | None) -> str:
    return a.strip() if b is None else f"{a.strip()} ‖ {b.strip()}"


def masked_mean(values, mask):
    """Mean of ``values`` (B,) or (B, T) over the positions where ``mask`` is true."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


#: kinds a plugin manager of this process registered, by name (see ``TaskKind.registered``)
_SEEN: dict[str, TaskKind] = {}
