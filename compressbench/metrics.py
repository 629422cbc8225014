"""Task metrics computed locally with scikit-learn, scipy and seqeval (no Hub metric scripts)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc", "macro_f1")
REGRESSION_METRICS = ("pearson", "spearman")
TOKEN_METRICS = ("f1", "precision", "recall", "accuracy")


def classification(labels: Sequence[int], preds: Sequence[int], label_names: Sequence[str],
                   names: Sequence[str]) -> dict:
    """The requested metrics plus macro-F1 and per-class F1, always.

    ``f1`` is the binary F1 of class 1 (GLUE's convention for MRPC and QQP).
    """
    y, p = np.asarray(labels), np.asarray(preds)
    out: dict = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(accuracy_score(y, p))
        elif name == "f1":
            out[name] = float(f1_score(y, p, pos_label=1, average="binary", zero_division=0))
        elif name == "mcc":
            out[name] = float(matthews_corrcoef(y, p))
        elif name != "macro_f1":
            raise ValueError(f"unknown classification metric {name!r}")
    ids = list(range(len(label_names)))
    out["macro_f1"] = float(f1_score(y, p, labels=ids, average="macro", zero_division=0))
    per_class = f1_score(y, p, labels=ids, average=None, zero_division=0)
    out["per_class_f1"] = {str(n): float(v) for n, v in zip(label_names, per_class)}
    return out


def regression(labels: Sequence[float], preds: Sequence[float], names: Sequence[str]) -> dict:
    y, p = np.asarray(labels, dtype=float), np.asarray(preds, dtype=float)
    constant = np.ptp(p) == 0 or np.ptp(y) == 0  # correlation undefined; report 0, not NaN
    out = {}
    for name in names:
        if name == "pearson":
            out[name] = 0.0 if constant else float(pearsonr(y, p)[0])
        elif name == "spearman":
            out[name] = 0.0 if constant else float(spearmanr(y, p)[0])
        elif name == "mse":
            out[name] = float(np.mean((y - p) ** 2))
        else:
            raise ValueError(f"unknown regression metric {name!r}")
    return out


def token_classification(labels: list[list[str]], preds: list[list[str]]) -> dict:
    """Entity-level precision/recall/F1 (seqeval, CoNLL evaluation), token accuracy, per type."""
    from seqeval.metrics import classification_report, precision_score, recall_score
    from seqeval.metrics import f1_score as ent_f1

    flat_y = [t for s in labels for t in s]
    flat_p = [t for s in preds for t in s]
    report = classification_report(labels, preds, output_dict=True, zero_division=0)
    per_type = {k: float(v["f1-score"]) for k, v in report.items() if not k.endswith(" avg")}
    return {
        "f1": float(ent_f1(labels, preds, zero_division=0)),
        "precision": float(precision_score(labels, preds, zero_division=0)),
        "recall": float(recall_score(labels, preds, zero_division=0)),
        "accuracy": float(np.mean([a == b for a, b in zip(flat_y, flat_p)])) if flat_y else 0.0,
        "macro_f1": float(report.get("macro avg", {}).get("f1-score", 0.0)),
        "per_class_f1": per_type,
    }
