"""Learning curves: how the 3-layer students of ``finetune``, ``kd``, ``distilbert`` and
``pkd-skip`` score as the training budget grows, and where distillation separates from the
no-distillation student that differs from it only by the teacher (the report's rule: the
two-level bootstrap over dev examples and seeds). Issue 14 sized ``suites/glue.yaml`` from
these curves.

Run (resumable: finished jobs are kept in RUNS and skipped):

    python benchmarks/learning_curves.py --data-dir ../shared/data --runs runs/curves \\
        --out reports/learning-curves [--budgets 1000,3000,10000] [--tasks sst2,stsb]

Each (task, budget) is one suite (the embedded MiniLM teacher fine-tuned on the same budget,
then the four students, every seed), run with the local executor; no latency is measured.
Writes ``OUT/learning-curves.md`` (table), ``.csv`` and ``.png`` (one panel per task, the main
metric against the budget, 95% bootstrap intervals).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

SUITE = """version: 1
name: curve-{task}-{budget}
teacher: {{model: embedded, training: {{epochs: 4}}}}
tasks: [{task}]
methods:
  - {{name: finetune, label: finetune-3L, student: {{layers: 3, init: teacher-skip}}}}
  - {{name: kd, label: kd-3L, student: {{layers: 3, init: teacher-skip}}}}
  - {{name: distilbert, label: distilbert-3L}}
  - {{name: pkd-skip, label: pkd-skip-3L, beta: 10}}
  # the baselines that differ only by the teacher: DistilBERT's student on labels alone, and
  # the 3-layer BERT initialised from the teacher's first layers as PKD's is
  - {{name: distilbert, label: distilbert-3L-labels, alpha_ce: 0, alpha_cos: 0}}
  - {{name: finetune, label: finetune-3L-first, student: {{layers: 3, init: teacher-first}}}}
seeds: [{seeds}]
training: {{epochs: {epochs}, batch_size: 32, learning_rate: 1.0e-4, max_seq_length: 128,
           max_train_samples: {budget}, max_val_samples: 300, max_eval_samples: null}}
measure: {{enabled: false}}
"""
METHODS = ("finetune-3L", "kd-3L", "distilbert-3L", "pkd-skip-3L")
BASELINES = ("distilbert-3L-labels", "finetune-3L-first")


def run_all(args) -> list[tuple[str, int, Path]]:
    from compressbench.plugins import get_plugin_manager
    from compressbench.runner import run_suite
    from compressbench.suite import load_suite

    done = []
    for budget in args.budgets:
        for task in args.tasks:
            folder = args.runs / f"{task}-{budget}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "suite.in.yaml"
            path.write_text(SUITE.format(task=task, budget=budget, seeds=args.seeds,
                                         epochs=args.epochs))
            start = time.time()
            records = run_suite(load_suite(path), get_plugin_manager(), args.data_dir,
                                folder / "run", args.cache, executor="local",
                                workers=args.workers)
            failed = [r["job_id"] for r in records if r["status"] != "ok"]
            print(f"{task} {budget}: {len(records)} jobs, {len(failed)} failed, "
                  f"{time.time() - start:.0f} s", flush=True)
            done.append((task, budget, folder / "run"))
    return done


def collect(done: list[tuple[str, int, Path]]) -> list[dict]:
    from compressbench import results
    from compressbench.report import summarise
    from compressbench.report.tables import comparison_text

    rows = []
    for task, budget, run in done:
        table = summarise(run).tables[0]
        # what the jobs trained on: a budget above the task's training set is the whole set
        # (less the held-out validation slice), e.g. STS-B's 5,749 -> 5,449
        sizes = {r["data"]["train"] for r in results.read(run) if r.get("data")}
        budget = sizes.pop() if len(sizes) == 1 else budget
        for row in table.rows:
            base = row.vs_baseline
            rows.append({
                "task": task, "budget": budget, "method": row.label, "seeds": len(row.seeds),
                "metric": table.main_metric, "score": row.mean_score,
                "seed_std": row.score_std, "ci_low": row.ci[0] if row.ci else None,
                "ci_high": row.ci[1] if row.ci else None,
                "baseline": base.other if base else None,
                "vs_baseline": base.diff if base else None,
                "vs_baseline_ci_low": base.ci[0] if base else None,
                "vs_baseline_ci_high": base.ci[1] if base else None,
                "vs_baseline_p": base.p if base else None,
                "vs_baseline_detectable": base.detectable if base else None,
                "vs_baseline_text": comparison_text(base) if base else "",
                "beats_baseline": (base.sign > 0) if base else None,
                "flags": " ".join(row.flags)})
    return rows


def separation(rows: list[dict]) -> list[str]:
    """Per task, the budgets at which each method beats its no-distillation student with
    significance."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        budgets = sorted({r["budget"] for r in rows if r["task"] == task})
        wins = {}
        for r in rows:
            if r["task"] == task and r["beats_baseline"]:
                wins.setdefault(r["method"], []).append(f"{r['budget']:,}")
        span = ", ".join(f"{b:,}" for b in budgets)
        if wins:
            said = "; ".join(f"`{m}` at {', '.join(b)}" for m, b in wins.items())
            lines.append(f"- **{task}** (budgets {span}): beats its no-distillation student "
                         f"with significance: {said}.")
        else:
            lines.append(f"- **{task}** (budgets {span}): no method beats its "
                         f"no-distillation student with significance at any budget measured.")
    return lines


def write(rows: list[dict], out: Path, settings: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "learning-curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Learning curves: 3-layer students against the training budget", "",
             ("Embedded MiniLM teacher fine-tuned on the same budget; 3-layer students; main "
             "metric on the whole dev set, mean over seeds, its 95% interval (two-level "
             "bootstrap: dev examples and seeds), and the difference from the no-distillation "
             "student that differs only by the teacher (kd-3L: finetune-3L; distilbert-3L: "
             "distilbert-3L-labels; pkd-skip-3L: finetune-3L-first) in points, with its 95% "
             "interval and p. ▲/▼: the interval excludes 0; ≈: it does not, with the smallest "
             "difference the budget's seeds and dev set could have detected (80% power)."), "",
             *([settings, ""] if settings else []),
             "Where distillation separates from the baseline:", "", *separation(rows), "",
             ("| task | budget | method | seeds | score | 95% CI | vs no-distillation student "
              "| flags |"),
             "|---|---:|---|---:|---:|---|---|---|"]
    for r in rows:
        vs = f"{r['vs_baseline_text']} vs {r['baseline']}" if r["baseline"] else ""
        ci = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["ci_low"] is not None else "–"
        lines.append(f"| {r['task']} | {r['budget']:,} | {r['method']} | {r['seeds']} | "
                     f"{r['score']:.4f} | {ci} | {vs} | {r['flags']} |")
    (out / "learning-curves.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "learning-curves.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4), dpi=110,
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, method in enumerate(["teacher", *METHODS]):
            pts = sorted((r["budget"], r) for r in rows
                         if r["task"] == task and r["method"] == method)
            if not pts:
                continue
            x = [b * (1 + 0.03 * (i - 2)) for b, _ in pts]  # a little apart, to read the bars
            y = [r["score"] for _, r in pts]
            err = [[max(0, r["score"] - (r["ci_low"] or r["score"])) for _, r in pts],
                   [max(0, (r["ci_high"] or r["score"]) - r["score"]) for _, r in pts]]
            ax.errorbar(x, y, yerr=err, marker="*" if method == "teacher" else "o",
                        capsize=2, lw=1, label=method,
                        ls="--" if method == "teacher" else "-")
            flagged = [(xi, yi) for xi, yi, (_, r) in zip(x, y, pts) if r["flags"]]
            if flagged:  # a collapsed model (one class, NaN): marked, as in the reports
                ax.scatter(*zip(*flagged), marker="x", s=60, color="#555", zorder=5,
                           label="flagged" if "flagged" not in
                           ax.get_legend_handles_labels()[1] else None)
        metric = next(r["metric"] for r in rows if r["task"] == task)
        ax.set(xscale="log", xlabel="training examples", ylabel=metric, title=task)
        ax.grid(True, color="#eee")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--runs", type=Path, default=Path("runs/curves"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("reports/learning-curves"))
    ap.add_argument("--budgets", default="1000,3000,10000")
    ap.add_argument("--tasks", default="sst2,stsb")
    ap.add_argument("--seeds", default="42, 43, 44")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--collect-only", action="store_true",
                    help="only summarise the runs already in --runs")
    args = ap.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.tasks = args.tasks.split(",")
    args.cache = args.cache or args.runs / "cache"
    if args.collect_only:
        done = [(t, b, args.runs / f"{t}-{b}" / "run") for b in args.budgets for t in args.tasks
                if (args.runs / f"{t}-{b}" / "run" / "results.jsonl").is_file()]
    else:
        done = run_all(args)
    settings = (f"Settings: seeds {args.seeds}; students {args.epochs:g} epochs, batch 32, "
                f"learning rate 1e-4, 300 validation examples held out of train; the "
                f"teacher 4 epochs on the same examples; no latency measured. \"budget\" is "
                f"the number of training examples the jobs saw.")
    write(collect(done), args.out, settings)
    print(f"wrote {args.out}/learning-curves.md, .csv, .png")


if __name__ == "__main__":
    main()
