"""The GLUE tasks' facts: files, columns, labels, metrics and the GLUE score's definition.

Data only (no heavy imports), so the report can read what a GLUE task's score is without
importing the task loaders.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GlueSpec:
    folder: str
    fields: tuple[str, str | None, str]  # text_a, text_b, label columns (indices for CoLA)
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    hub_fields: tuple[str, str | None]
    header: bool = True
    eval_files: tuple[str, ...] = ("dev",)
    # the metrics GLUE averages into the task's score (Wang et al. 2019, "GLUE: A Multi-Task
    # Benchmark and Analysis Platform for Natural Language Understanding", Table 1 and §4: CoLA
    # is scored by MCC alone; "for tasks with multiple metrics, we use an unweighted average of
    # the metrics as the score for the task"); None: every metric in ``metrics``
    glue_score: tuple[str, ...] | None = None


GLUE = {
    "cola": GlueSpec("CoLA", ("3", None, "1"), ("unacceptable", "acceptable"), ("mcc", "accuracy"),
                     ("sentence", None), header=False, glue_score=("mcc",)),
    "sst2": GlueSpec("SST-2", ("sentence", None, "label"), ("negative", "positive"),
                     ("accuracy",), ("sentence", None)),
    "mrpc": GlueSpec("MRPC", ("#1 String", "#2 String", "Quality"),
                     ("not_equivalent", "equivalent"), ("accuracy", "f1"),
                     ("sentence1", "sentence2")),
    "stsb": GlueSpec("STS-B", ("sentence1", "sentence2", "score"), (), ("pearson", "spearman"),
                     ("sentence1", "sentence2")),
    "qqp": GlueSpec("QQP", ("question1", "question2", "is_duplicate"),
                    ("not_duplicate", "duplicate"), ("accuracy", "f1"),
                    ("question1", "question2")),
    "mnli": GlueSpec("MNLI", ("sentence1", "sentence2", "gold_label"),
                     ("entailment", "neutral", "contradiction"), ("accuracy",),
                     ("premise", "hypothesis"), eval_files=("dev_matched", "dev_mismatched")),
    "qnli": GlueSpec("QNLI", ("question", "sentence", "label"), ("entailment", "not_entailment"),
                     ("accuracy",), ("question", "sentence")),
    "rte": GlueSpec("RTE", ("sentence1", "sentence2", "label"), ("entailment", "not_entailment"),
                    ("accuracy",), ("sentence1", "sentence2")),
    "wnli": GlueSpec("WNLI", ("sentence1", "sentence2", "label"), ("not_entailment", "entailment"),
                     ("accuracy",), ("sentence1", "sentence2")),
}
