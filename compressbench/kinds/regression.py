"""Regression: one real-valued score per example (STS-B); a (B, 1) head, mean squared error."""
from __future__ import annotations

import numpy as np

from compressbench.kinds.analysis import CLOSE, FAR, regression_bands
from compressbench.kinds.base import TaskKind, max_diff, pair_text
from compressbench.kinds.resampling import pearson_rows, rank_rows


class Regression(TaskKind):
    name = "regression"
    description = "one score per example or sentence pair; a (B, 1) head, mean squared error"
    has_classes = False
    user_files = True
    metrics = ("pearson", "spearman")
    default_metrics = ("pearson", "spearman")
    checked_metric = "pearson"
    unit = "score"
    analysis_text = "mean absolute error per band of the gold score"
    flip_text = ("examples where the teacher is within 0.5 of the gold score and the method "
                 "off by 1 or more")
    problem_type = "regression"

    def num_labels(self, labels) -> int:
        return 1

    def label_value(self, label) -> float:
        return float(label)

    def score(self, task, gold, predictions) -> dict:
        from compressbench import metrics as M
        return M.regression(gold, predictions, task.metrics)

    def task_loss(self, logits, labels):
        import torch.nn.functional as F
        return F.mse_loss(logits.view(-1), labels.float())  # logits (B, 1), labels (B,)

    def soft_loss(self, student, teacher, temperature: float, mask=None):
        """The squared error to the teacher's prediction (no temperature)."""
        import torch.nn.functional as F
        return F.mse_loss(student.view(-1), teacher.view(-1))  # (B, 1) vs (B, 1)

    soft_cross_entropy = soft_loss

    def kl_is_class_mean(self) -> bool:
        return False

    def predictions(self, logits, feats, idx) -> list:
        return logits.view(-1).tolist()  # (B,)

    def placeholder_label(self, example) -> float:
        return 0.0

    def hard_label(self, logits, feature) -> float:
        return float(logits.view(-1)[0])

    def agreement(self, a, b, masks) -> dict:
        """Regression outputs have no classes: the largest difference only."""
        return {"examples": int(sum(len(x) for x in a)), "max_abs_logit_diff": max_diff(a, b),
                "prediction_agreement": None}

    def resample_metric(self, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
        gi = np.asarray(gold).astype(float)[idx]
        pi = np.asarray(pred).astype(float)[idx]
        if metric == "pearson":
            return pearson_rows(gi, pi)
        if metric == "spearman":
            return pearson_rows(rank_rows(gi), rank_rows(pi))
        raise ValueError(f"no bootstrap for regression metric {metric!r}")

    def majority_baseline(self, metric: str, gold) -> tuple[float, str]:
        return 0.0, "a constant prediction has correlation 0"

    def class_names(self, labels) -> list[str]:
        return []

    def errors(self, gold, preds, teacher, labels) -> dict:
        """Errors per band of the gold score; right: within CLOSE of gold, wrong: FAR off."""
        from compressbench import metrics as M
        return {"per_class": [], "bands": regression_bands(gold, preds), "confusion": None,
                "got": M.regression(gold, preds, ["pearson"])["pearson"],
                "right": [abs(p - g) <= CLOSE for g, p in zip(gold, preds)],
                "wrong": [abs(p - g) >= FAR for g, p in zip(gold, preds)],
                "t_right": ([abs(p - g) <= CLOSE for g, p in zip(gold, teacher)]
                            if teacher else None),
                "t_wrong": ([abs(p - g) >= FAR for g, p in zip(gold, teacher)]
                            if teacher else None)}

    def example(self, labels, a, b, gold, teacher, pred) -> dict:
        return {"text": pair_text(a, b), "gold": f"{gold:.2f}", "teacher": f"{teacher:.2f}",
                "method": f"{pred:.2f}"}
