"""Measurement summaries and helpers (the subprocess itself is exercised in test_runner)."""
from __future__ import annotations

import statistics

import pytest

from compressbench.measure import Summary, cpu_model, peak_rss_mb, rss_mb


def test_summary_percentiles_interpolate_like_numpy():
    s = Summary.of([float(v) for v in range(1, 101)])  # 1..100 ms
    assert (s.n, s.min, s.max) == (100, 1.0, 100.0)
    assert s.p50 == pytest.approx(50.5)
    assert s.p90 == pytest.approx(90.1)
    assert s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5)
    assert s.stdev == pytest.approx(statistics.stdev(range(1, 101)))


def test_summary_edge_cases():
    one = Summary.of([3.0])
    assert one.p50 == one.p99 == 3.0 and one.stdev == 0.0
    with pytest.raises(ValueError):
        Summary.of([])


def test_memory_and_cpu_helpers():
    assert peak_rss_mb() >= rss_mb() * 0.9 > 0
    assert cpu_model()


def test_interrupt_exit_code(monkeypatch, tmp_path, capsys):
    import compressbench.runner as runner
    from compressbench.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_suite", interrupted)
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\ntasks: [sst2]\nmethods: [finetune]\n")
    assert main(["run", str(path), "--output", str(tmp_path / "run")]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
