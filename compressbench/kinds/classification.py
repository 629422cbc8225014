"""Sequence classification: one class per example (SST-2, MNLI, a user's labelled file)."""
from __future__ import annotations

import numpy as np

from compressbench.kinds.base import TaskKind
from compressbench.kinds.resampling import class_counts, safe_div


class Classification(TaskKind):
    name = "classification"
    description = "one class per example or sentence pair; (B, C) logits, cross-entropy"
    user_files = True
    metrics = ("accuracy", "f1", "mcc", "macro_f1")
    default_metrics = ("accuracy", "macro_f1")

    def check_task(self, task, where: str) -> None:
        from compressbench.errors import ConfigError
        super().check_task(task, where)
        if "f1" in task.metrics and len(task.labels) != 2:
            raise ConfigError(f"{where}.metrics: 'f1' is the F1 of class 1 of a binary task, "
                              f"and {task.name} has {len(task.labels)} labels "
                              f"({', '.join(task.labels)}); use macro_f1")

    def score(self, task, gold, predictions) -> dict:
        from compressbench import metrics as M
        return M.classification(gold, predictions, task.labels, task.metrics)

    def resample_metric(self, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
        g, p = np.asarray(gold), np.asarray(pred)
        if metric == "accuracy":
            return (g == p)[idx].mean(1)
        if metric == "f1":
            tp, fp, fn = class_counts(g, p, idx, 1)
            return safe_div(2 * tp, 2 * tp + fp + fn)
        if metric == "mcc":
            tp, fp, fn = class_counts(g, p, idx, 1)
            tn = idx.shape[1] - tp - fp - fn
            den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            return safe_div(tp * tn - fp * fn, den)
        if metric == "macro_f1":
            classes = np.union1d(np.unique(g), np.unique(p))
            per = [safe_div(2 * tp, 2 * tp + fp + fn) for tp, fp, fn in
                   (class_counts(g, p, idx, int(c)) for c in classes)]
            return np.mean(per, axis=0)
        raise ValueError(f"no bootstrap for classification metric {metric!r}")
