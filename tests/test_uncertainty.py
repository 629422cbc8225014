"""Uncertainty in the report: the bootstrap against closed forms and against the metrics'
own implementations, the pairing, each flag on a constructed run, the interval rule for what to
pick, and the latency control."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from compressbench import metrics as M
from compressbench.report import summarise
from compressbench.report import uncertainty as U
from tests.test_report import copy_saved_run, records


def test_the_bootstrap_interval_of_accuracy_matches_the_normal_approximation():
    """n Bernoulli(p) outcomes: the percentile interval is p +- 1.96 sqrt(p(1-p)/n)."""
    n, p = 2000, 0.8
    gold = np.zeros(n, dtype=int)
    pred = (np.arange(n) >= p * n).astype(int)  # exactly 80% right
    idx = U.resamples(n, "closed-form")
    lo, hi = U.interval(U.metric_on("classification", "accuracy", gold, pred, idx))
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    assert lo == pytest.approx(p - half, abs=0.004) and hi == pytest.approx(p + half, abs=0.004)


def test_every_resampled_metric_equals_the_metric_on_the_identity_resample():
    rng = np.random.default_rng(1)
    gold, pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    ident = np.arange(300)[None, :]
    ours = {m: U.metric_on("classification", m, gold, pred, ident)[0]
            for m in ("accuracy", "f1", "mcc", "macro_f1")}
    ref = M.classification(gold, pred, ["a", "b"], ["accuracy", "f1", "mcc"])
    assert ours == pytest.approx({k: ref[k] for k in ours})
    three_g, three_p = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert U.metric_on("classification", "macro_f1", three_g, three_p, ident)[0] == \
        pytest.approx(M.classification(three_g, three_p, "abc", ["accuracy"])["macro_f1"])
    y = rng.normal(size=200).round(1)  # ties, as STS-B's gold scores have
    x = y + rng.normal(size=200)
    ident = np.arange(200)[None, :]
    ref = M.regression(y, x, ["pearson", "spearman"])
    for m in ("pearson", "spearman"):
        assert U.metric_on("regression", m, y, x, ident)[0] == pytest.approx(ref[m])
    tags = ["O", "B-PER", "I-PER", "B-LOC"]
    gold_t = [[tags[i] for i in rng.integers(0, 4, 7)] for _ in range(60)]
    pred_t = [[t if rng.random() < 0.7 else "O" for t in s] for s in gold_t]
    ref = M.token_classification(gold_t, pred_t)
    ident = np.arange(60)[None, :]
    for m in ("f1", "precision", "recall", "accuracy"):
        assert U.metric_on("token", m, gold_t, pred_t, ident)[0] == pytest.approx(ref[m])


def test_pairing_identical_models_differ_by_nothing_and_pairing_sharpens():
    rng = np.random.default_rng(2)
    n = 400
    gold = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.75, gold, 1 - gold)
    idx = U.resamples(n, "pairing")
    sa = U.metric_on("classification", "accuracy", gold, a, idx)
    same = U.compare("a", sa, sa.copy(), [0.7], [0.7])
    assert same.diff == 0 and same.ci == (0.0, 0.0) and same.p == 1.0
    assert not same.distinguishable and same.sign == 0
    b = a.copy()  # b fixes 12 of a's errors and changes nothing else
    wrong = np.flatnonzero(a != gold)[:12]
    b[wrong] = gold[wrong]
    sb = U.metric_on("classification", "accuracy", gold, b, idx)
    paired = U.compare("a", sb, sa, [float((b == gold).mean())], [float((a == gold).mean())])
    assert paired.distinguishable and paired.sign == 1  # 3 points, every resample agrees
    assert U.interval(sb)[0] < U.interval(sa)[1]  # yet the two intervals overlap


def test_the_seeds_spread_widens_a_bootstrap_difference():
    rng = np.random.default_rng(3)
    boot = rng.normal(0.02, 0.005, 1000)  # the split says +2 points
    steady = U.compare("x", boot, np.zeros(1000), [0.9, 0.9, 0.9], [0.88, 0.88, 0.88])
    assert steady.ci[0] > 0 and steady.distinguishable  # seeds agree: the split decides
    c = U.compare("x", boot, np.zeros(1000), [0.9, 0.8, 0.95], [0.85, 0.9, 0.8])
    assert c.ci[0] < 0 < c.ci[1] and not c.distinguishable


def constructed_run(tmp_path):
    """The saved report run (sst2, stsb, conll2003), with what each flag needs planted."""
    run = copy_saved_run(tmp_path)
    recs = records(run)
    preds_dir = run / "predictions"
    for r in recs:
        if r["task"] == "stsb" and r["label"] == "kd-2L":
            r["metrics"]["spearman"] = float("nan")  # a NaN metric
        if r["task"] == "conll2003" and r["label"] == "kd2-int8":
            path = preds_dir / f"{r['job_id'].replace('/', '__')}.json"
            preds = json.loads(path.read_text())
            path.write_text(json.dumps({s: [[0] * len(x) for x in v] for s, v in
                                        preds.items()}))  # every word tagged O
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


def test_each_flag_on_a_constructed_run_and_flagged_models_are_never_picked(tmp_path):
    run = constructed_run(tmp_path)
    s = summarise(run, latency_budget=1e6)
    tables = {t.task: t for t in s.tables}
    assert U.CHANCE in tables["sst2"].teacher.flags  # 0.64 vs 0.59 on 128 examples
    assert tables["sst2"].majority == pytest.approx(76 / 128)
    assert tables["stsb"].row("kd-2L").flags == [U.NAN]
    assert tables["conll2003"].row("kd2-int8").flags == [U.CONSTANT]
    assert tables["conll2003"].row("kd2-int8").ci == (0.0, 0.0)
    picked = {(p.task, k.row.label) for p in s.picks for k in p.picks if k.row}
    assert ("stsb", "kd-2L") not in picked and ("conll2003", "kd2-int8") not in picked
    assert not [k.row for p in s.picks if p.task == "sst2" for k in p.picks if k.row]
    # kd2-int8 was the fastest and smallest CoNLL model: flagged, it is off the fronts too
    assert not tables["conll2003"].row("kd2-int8").pareto_latency
    from compressbench.report import tables as T

    md = "\n".join(T.table_notes(tables["conll2003"]))
    assert "**flagged** (never picked below): kd2-int8: predicts one class" in md


def test_a_model_indistinguishable_from_its_teacher_is_shown_so(tmp_path):
    run = copy_saved_run(tmp_path)
    recs = records(run)
    teacher = next(r for r in recs if r["task"] == "conll2003" and r["label"] == "teacher")
    for r in recs:  # a "student" with the teacher's own predictions and a higher score
        if r["task"] == "conll2003" and r["label"] == "kd-2L":
            src = run / "predictions" / f"{teacher['job_id'].replace('/', '__')}.json"
            dst = run / "predictions" / f"{r['job_id'].replace('/', '__')}.json"
            dst.write_text(src.read_text())
            r["metrics"]["f1"] = r["score"] = teacher["score"] * 1.026
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    table = next(t for t in summarise(run).tables if t.task == "conll2003")
    row = table.row("kd-2L")
    assert row.retained == pytest.approx(102.6) and row.within_teacher(1.0)
    from compressbench.report import tables as T

    cells = {h: c.text for h, c in zip(T.task_table(table).head,
                                       T.task_table(table).rows[2])}
    assert cells["retained %"] == "102.6" and "within 1 point" in cells["vs teacher"]


def test_the_pick_rule_uses_the_interval_not_the_point_estimate(tmp_path):
    """A model 0.5 point below the teacher on average, but with an interval reaching 3 points
    below, is not "within 1 point"."""
    from compressbench.report.summary import Row, is_close

    teacher = Row("teacher", "finetune", [1], {}, [0.80])
    near = Row("near", "kd", [1], {}, [0.795])
    near.vs_teacher = U.Comparison("teacher", -0.005, (-0.03, 0.02), 0.6)
    sure = Row("sure", "kd", [1], {}, [0.79])
    sure.vs_teacher = U.Comparison("teacher", -0.01, (-0.009, -0.001), 0.01)
    assert not is_close(near, teacher, 1.0) and is_close(sure, teacher, 1.0)
    no_preds = Row("old", "kd", [1], {}, [0.795])  # a run without predictions: the mean
    assert is_close(no_preds, teacher, 1.0)
    sure.flags.append(U.CONSTANT)
    assert not is_close(sure, teacher, 1.0)


def test_the_latency_control_warns_when_the_machine_was_busy(tmp_path):
    from compressbench.report import tables as T

    run = copy_saved_run(tmp_path)
    recs = records(run)
    for r in recs:
        if r["label"] == "teacher":
            torch = r["measure"]["backends"]["torch"] if "backends" in r["measure"] \
                else r["measure"]
            ci = [0.97, 1.04] if r["task"] == "sst2" else [1.08, 1.15]
            torch["control"] = {"reference": "control", "speedup": sum(ci) / 2,
                                "cpu_speedup": 1.0, "ci95": ci}
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    lines = T.env_lines(summarise(run))
    control = next(x for x in lines if x.startswith("latency control"))
    assert "sst2 1.00× [0.97, 1.04]" in control
    warning = next(x for x in lines if "latency control is off" in x)
    assert "stsb" in warning and "conll2003" in warning and "sst2" not in warning


def test_the_speedup_interval_covers_the_ratio_of_medians():
    from compressbench.measure.protocol import ratio_interval

    rng = np.random.default_rng(4)
    model = list(rng.normal(5.0, 0.3, 200))
    ref = list(rng.normal(10.0, 0.6, 200))
    lo, hi = ratio_interval(model, ref)
    assert lo < np.median(ref) / np.median(model) < hi and hi - lo < 0.3
    same = list(rng.normal(5.0, 0.3, 200))
    lo, hi = ratio_interval(model, same)
    assert lo < 1.0 < hi
