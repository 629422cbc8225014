"""Metrics against values computed by hand."""
from __future__ import annotations

import math

import pytest

from compressbench import metrics as M


def test_classification_by_hand():
    y = [1, 1, 0, 0, 1]
    p = [1, 0, 0, 1, 1]
    out = M.classification(y, p, ("neg", "pos"), ("accuracy", "f1", "mcc"))
    # tp=2 fp=1 fn=1 tn=1
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert out["mcc"] == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    f1_neg = 2 * 1 / (2 * 1 + 1 + 1)
    assert out["per_class_f1"] == pytest.approx({"neg": f1_neg, "pos": 2 / 3})
    assert out["macro_f1"] == pytest.approx((f1_neg + 2 / 3) / 2)


def test_regression_by_hand():
    out = M.regression([1, 2, 3, 4], [2, 4, 6, 9], ("pearson", "spearman"))
    assert out["spearman"] == pytest.approx(1.0)
    # dx = (-1.5, -.5, .5, 1.5), dy = (-3.25, -1.25, .75, 3.75): r = 11.5 / sqrt(5 * 26.75)
    assert out["pearson"] == pytest.approx(11.5 / math.sqrt(5 * 26.75))
    assert M.regression([1, 2], [3, 3], ("pearson",))["pearson"] == 0.0  # constant: no NaN


def test_entity_level_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    out = M.token_classification(gold, pred)
    # entities: gold {PER, LOC, ORG}, predicted {PER, ORG(wrong), ORG}: 2 correct of 3 and 3
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["per_class_f1"]["PER"] == 1.0 and out["per_class_f1"]["LOC"] == 0.0
