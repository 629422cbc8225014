"""Learning curves: how the students of ``finetune``, ``kd``, ``distilbert``, ``pkd-skip`` and
``tinybert`` score as the labelled budget and the transfer set grow, and where distillation
separates from the no-distillation student that differs from it only by the teacher (the
report's rule: the two-level bootstrap over dev examples and seeds). Issue 14 sized
``suites/glue.yaml`` from the first version; issue 24 added the transfer sets (unlabelled
sentences of the task beyond the labelled ones for classification tasks, augmented copies of the
labelled examples for regression ones, labelled by the teacher) and a mean-pooling head.

Run (resumable: finished jobs are kept in RUNS and skipped):

    python benchmarks/learning_curves.py --data-dir ../shared/data --runs runs/curves \\
        --out reports/learning-curves [--budgets 1000,3000] [--tasks sst2,stsb] \\
        [--unlabeled 10000,30000] [--copies 4,10] [--kd-only-unlabeled 30000] \\
        [--kd-only-copies 10] [--regression-unlabeled 10000] [--mean-pool] [--mean-pool-transfer]

Each (task, budget) is one suite (the embedded MiniLM teacher fine-tuned on the labelled
examples, then every student, every seed), run with the local executor; no latency is
measured. Transfer sizes are entries of that suite (``kd-3L+u10000``, ``tinybert-4L+aug4``):
the teacher is trained once and labels each transfer set once. Writes
``OUT/learning-curves.md`` (table), ``.csv`` and ``.png`` (one panel per task: the main metric
against the transfer size, 95% intervals, one line per method and labelled budget).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import yaml

#: the distillation methods, and the no-distillation students that differ from each only by
#: the teacher (same student, initialisation and training settings, labels alone)
METHODS = {
    "kd-3L": {"name": "kd", "student": {"layers": 3, "init": "teacher-skip"}},
    "distilbert-3L": {"name": "distilbert"},
    "pkd-skip-3L": {"name": "pkd-skip", "beta": 10},
    "tinybert-4L": {"name": "tinybert", "intermediate_epochs": 3,
                    "training": {"epochs": 3, "learning_rate": 1.0e-3}},
}
BASELINES = {
    "finetune-3L": {"name": "finetune", "student": {"layers": 3, "init": "teacher-skip"}},
    "finetune-3L-first": {"name": "finetune", "student": {"layers": 3, "init": "teacher-first"}},
    "distilbert-3L-labels": {"name": "distilbert", "alpha_ce": 0, "alpha_cos": 0},
    "tinybert-4L-labels": {"name": "finetune",
                           "student": {"layers": 4, "init": "random", "hidden_size": 156,
                                       "num_attention_heads": 12, "intermediate_size": 600},
                           "training": {"epochs": 3, "learning_rate": 1.0e-3}},
}
#: the same students with a mean-pooling head (``student: {head: mean}``), for regression
MEAN = {"finetune-3L-mean": {"name": "finetune",
                             "student": {"layers": 3, "init": "teacher-skip", "head": "mean"}},
        "kd-3L-mean": {"name": "kd",
                       "student": {"layers": 3, "init": "teacher-skip", "head": "mean"}}}


def transfer_label(label: str, transfer: dict | None) -> str:
    if not transfer:
        return label
    if "unlabeled" in transfer:
        return f"{label}+u{transfer['unlabeled']}"
    return f"{label}+aug{transfer['augment']['copies']}"


def with_transfer(entry: dict, transfer: dict | None) -> dict:
    entry = {**entry, "training": dict(entry.get("training", {}))}
    if transfer:
        entry["training"]["transfer"] = transfer
    if not entry["training"]:
        del entry["training"]
    return entry


def transfers(args, task: str, kd_only: bool) -> list[dict]:
    """The transfer sets of ``task``: unlabelled sentences for a classification task,
    augmented copies for a regression one (STS-B's unlabelled pool is small)."""
    if task in args.regression:
        sizes = args.kd_only_copies if kd_only else args.copies
        pool = [] if kd_only else args.regression_unlabeled  # its own remaining pairs
        return [{"augment": {"rules": "tang", "copies": n}} for n in sizes] + \
            [{"unlabeled": n} for n in pool]
    sizes = args.kd_only_unlabeled if kd_only else args.unlabeled
    return [{"unlabeled": n} for n in sizes]


def suite_for(args, task: str, budget: int) -> dict:
    methods = []
    for label, entry in BASELINES.items():
        methods.append({**entry, "label": label})
    for label, entry in METHODS.items():
        for transfer in [None, *transfers(args, task, False)]:
            methods.append({**with_transfer(entry, transfer),
                            "label": transfer_label(label, transfer)})
    for transfer in transfers(args, task, True):
        methods.append({**with_transfer(METHODS["kd-3L"], transfer),
                        "label": transfer_label("kd-3L", transfer)})
    if args.mean_pool and task in args.regression:
        for label, entry in MEAN.items():
            methods.append({**entry, "label": label})
        for transfer in transfers(args, task, False) if args.mean_pool_transfer else ():
            methods.append({**with_transfer(MEAN["kd-3L-mean"], transfer),
                            "label": transfer_label("kd-3L-mean", transfer)})
    return {"version": 1, "name": f"curve-{task}-{budget}",
            "teacher": {"model": "embedded", "training": {"epochs": 4}},
            "tasks": [task], "methods": methods, "seeds": args.seeds,
            "training": {"epochs": args.epochs, "batch_size": 32, "learning_rate": 1.0e-4,
                         "max_seq_length": args.max_seq_length, "max_train_samples": budget,
                         "max_val_samples": 300, "max_eval_samples": None},
            "measure": {"enabled": False}}


def run_all(args) -> list[tuple[str, int, Path, float]]:
    from compressbench.plugins import get_plugin_manager
    from compressbench.runner import run_suite
    from compressbench.suite import load_suite

    done = []
    for budget in args.budgets:
        for task in args.tasks:
            folder = args.runs / f"{task}-{budget}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "suite.in.yaml"
            path.write_text(yaml.safe_dump(suite_for(args, task, budget), sort_keys=False))
            start = time.time()
            records = run_suite(load_suite(path), get_plugin_manager(), args.data_dir,
                                folder / "run", args.cache, executor="local",
                                workers=args.workers)
            failed = [r["job_id"] for r in records if r["status"] != "ok"]
            took = time.time() - start
            print(f"{task} {budget}: {len(records)} jobs, {len(failed)} failed, "
                  f"{took:.0f} s", flush=True)
            done.append((task, budget, folder / "run"))
    return done


def collect(done: list[tuple[str, int, Path]]) -> list[dict]:
    from compressbench import results
    from compressbench.report import summarise
    from compressbench.report.tables import comparison_text

    rows = []
    for task, budget, run in done:
        table = summarise(run).tables[0]
        recs = [r for r in results.read(run) if r.get("status") == "ok"]
        # what the jobs trained on: a budget above the task's training set is the whole set
        # (less the held-out validation slice), e.g. STS-B's 5,749 -> 5,449
        sizes = {r["data"]["train"] for r in recs if r.get("data")}
        budget = sizes.pop() if len(sizes) == 1 else budget
        for row in table.rows:
            base = row.vs_baseline
            mine = [r for r in recs if r["label"] == row.label]
            info = [(r.get("training") or [{}])[-1].get("transfer") or {} for r in mine]
            walls = [r["wall_s"] for r in mine if r.get("wall_s") is not None]
            labelled = [i["label_s"] for i in info if i.get("label_s") is not None]
            method, _, extra = row.label.partition("+")
            rows.append({
                "task": task, "budget": budget, "method": method,
                "transfer": extra or "none", "transfer_examples": max(
                    (i.get("transfer", 0) for i in info), default=0),
                "label": row.label, "seeds": len(row.seeds),
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
                "vs_baseline_sign": base.sign if base else None,
                # per job, mean over seeds: the teacher's labelling of the transfer set (done
                # once per setting and cached, so only the first job of a setting pays it) and
                # the job's whole wall time, on a 2-core machine with 2 workers
                "label_s": round(max(labelled), 1) if labelled else None,
                "wall_s": round(sum(walls) / len(walls), 1) if walls else None,
                "flags": " ".join(row.flags)})
    return rows


def separation(rows: list[dict]) -> list[str]:
    """Per task, the settings at which each method beats its no-distillation student with
    significance, and those at which it is worse."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task and r["baseline"]]
        wins = [f"`{r['label']}` ({r['budget']:,} labels, {r['vs_baseline_text']})"
                for r in mine if r["vs_baseline_sign"] == 1]
        worse = [f"`{r['label']}` ({r['budget']:,})" for r in mine
                 if r["vs_baseline_sign"] == -1]
        line = f"- **{task}**: "
        line += ("beats its no-distillation student with significance: " + "; ".join(wins)
                 if wins else "no setting beats its no-distillation student with significance")
        if worse:
            line += ". Significantly worse: " + ", ".join(worse)
        lines.append(line + ".")
    return lines


def write(rows: list[dict], out: Path, settings: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "learning-curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Learning curves: students against the labelled budget and the transfer set", "",
             ("Embedded MiniLM teacher fine-tuned on the labelled examples; students: 3-layer "
              "BERT (kd, distilbert, pkd-skip) and TinyBERT's 4-layer, 156-wide one; main "
              "metric on the whole dev set, mean over seeds, its 95% interval (two-level "
              "bootstrap: dev examples and seeds), and the difference from the "
              "no-distillation student that differs only by the teacher (kd-3L: finetune-3L; "
              "distilbert-3L: distilbert-3L-labels; pkd-skip-3L: finetune-3L-first; "
              "tinybert-4L: tinybert-4L-labels; kd-3L-mean: finetune-3L-mean) in points, "
              "with its 95% interval and p. ▲/▼: the interval excludes 0; ≈: it does not, "
              "with the smallest difference the seeds and dev set could have detected (80% "
              "power). `+u10000`: 10,000 unlabelled training sentences of the task beyond the "
              "labelled ones, labelled by the teacher; `+aug4`: 4 augmented copies of each "
              "labelled example (Tang et al.'s rules), labelled by the teacher. The baseline "
              "has no transfer set (it has no teacher to label one)."), "",
             *([settings, ""] if settings else []),
             "Where distillation separates from the baseline:", "", *separation(rows), "",
             ("| task | labels | method | transfer | seeds | score | 95% CI | vs no-distillation "
              "student | labelling s | job s | flags |"),
             "|---|---:|---|---|---:|---:|---|---|---:|---:|---|"]
    for r in rows:
        vs = f"{r['vs_baseline_text']} vs {r['baseline']}" if r["baseline"] else ""
        ci = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["ci_low"] is not None else "–"
        extra = r["transfer"] if r["transfer"] == "none" else \
            f"{r['transfer']} ({r['transfer_examples']:,})"
        lines.append(f"| {r['task']} | {r['budget']:,} | {r['method']} | {extra} | "
                     f"{r['seeds']} | {r['score']:.4f} | {ci} | {vs} | "
                     f"{r['label_s'] if r['label_s'] is not None else ''} | "
                     f"{r['wall_s'] if r['wall_s'] is not None else ''} | {r['flags']} |")
    (out / "learning-curves.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "learning-curves.png")


def plot(rows: list[dict], path: Path) -> None:
    """One panel per task: each method's score against its transfer-set size (0 at the left),
    one line per labelled budget; the teacher and the baselines as horizontal bands."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.2 * len(tasks), 4.4), dpi=110,
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        methods = list(dict.fromkeys(r["method"] for r in mine if r["baseline"]))
        budgets = sorted({r["budget"] for r in mine})
        sources = sorted({source(r) for r in mine if source(r)})  # "aug", "unlabelled"
        lines = [(m, b, src) for m in methods for b in budgets for src in sources]
        for i, (method, budget, src) in enumerate(lines):
            pts = sorted((r["transfer_examples"], r) for r in mine
                         if r["method"] == method and r["budget"] == budget
                         and source(r) in ("", src))  # from no transfer set to this kind
            if len(pts) < 2 and not (len(sources) <= 1 and pts):
                continue
            x = [n + 120 * (i - len(lines) / 2) for n, _ in pts]  # apart, to read the bars
            y = [r["score"] for _, r in pts]
            err = [[max(0, r["score"] - (r["ci_low"] or r["score"])) for _, r in pts],
                   [max(0, (r["ci_high"] or r["score"]) - r["score"]) for _, r in pts]]
            tag = method + (f" ({budget:,})" if len(budgets) > 1 else "") + \
                (f", {src}" if len(sources) > 1 else "")
            ax.errorbar(x, y, yerr=err, marker="o" if src != "aug" else "s", capsize=2,
                        lw=1, label=tag, ls="-" if src != "aug" else "--")
        for r in mine:
            if not r["baseline"] and r["method"] in ("teacher", "finetune-3L"):
                ax.axhline(r["score"], ls="--" if r["method"] == "teacher" else ":",
                           color="#555" if r["method"] == "teacher" else "#999", lw=1)
                ax.annotate(f"{r['method']} ({r['budget']:,})", (0, r["score"]),
                            fontsize=6, color="#555", va="bottom")
        ax.set(xlabel="transfer examples labelled by the teacher", ylabel=mine[0]["metric"],
               title=task)
        ax.grid(True, color="#eee")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def source(row: dict) -> str:
    """What a row's transfer set is made of: "" (none), "aug" or "unlabelled"."""
    t = row["transfer"]
    return "" if t == "none" else ("aug" if t.startswith("aug") else "unlabelled")


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--runs", type=Path, default=Path("runs/curves"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("reports/learning-curves"))
    ap.add_argument("--budgets", default="1000")
    ap.add_argument("--tasks", default="sst2,stsb")
    ap.add_argument("--regression", default="stsb",
                    help="tasks whose transfer sets are augmented copies, not unlabelled text")
    ap.add_argument("--unlabeled", default="10000",
                    help="unlabelled transfer sizes for every distillation method")
    ap.add_argument("--copies", default="4", help="augmented copies for every method")
    ap.add_argument("--regression-unlabeled", default="",
                    help="also unlabelled transfer sizes for the regression tasks (STS-B has "
                         "about 4,400 training pairs beyond 1,000 labels and the validation)")
    ap.add_argument("--kd-only-unlabeled", default="",
                    help="further unlabelled transfer sizes, for kd-3L alone (cost)")
    ap.add_argument("--kd-only-copies", default="",
                    help="further augmented copies, for kd-3L alone (cost)")
    ap.add_argument("--mean-pool", action="store_true",
                    help="also the 3-layer students with a mean-pooling head (regression tasks)")
    ap.add_argument("--mean-pool-transfer", action="store_true",
                    help="and kd-3L-mean with each transfer set")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--collect-only", action="store_true",
                    help="only summarise the runs already in --runs")
    args = ap.parse_args()
    args.budgets = ints(args.budgets)
    args.tasks = args.tasks.split(",")
    args.regression = set(args.regression.split(","))
    args.unlabeled, args.copies = ints(args.unlabeled), ints(args.copies)
    args.regression_unlabeled = ints(args.regression_unlabeled)
    args.kd_only_unlabeled = ints(args.kd_only_unlabeled)
    args.kd_only_copies = ints(args.kd_only_copies)
    args.seeds = ints(args.seeds)
    args.cache = args.cache or args.runs / "cache"
    if args.collect_only:
        done = [(t, b, args.runs / f"{t}-{b}" / "run") for b in args.budgets for t in args.tasks
                if (args.runs / f"{t}-{b}" / "run" / "results.jsonl").is_file()]
    else:
        done = run_all(args)
    seeds = ", ".join(map(str, args.seeds))
    settings = (f"Settings: seeds {seeds}; students {args.epochs:g} epochs over the labelled "
                f"examples and the transfer set together (TinyBERT's: 3 intermediate and 3 "
                f"prediction epochs, learning rate 1e-3), batch 32, learning rate 1e-4, "
                f"max_seq_length {args.max_seq_length}, 300 validation examples held out of "
                f"train (never in a transfer set); the teacher 4 epochs on the labelled "
                f"examples; no latency measured. \"labels\": the labelled examples the jobs "
                f"saw. \"labelling s\": the teacher labelling the transfer set, once per "
                f"setting; \"job s\": a job's wall time, mean over seeds, 2 workers on 2 cores.")
    write(collect(done), args.out, settings)
    print(f"wrote {args.out}/learning-curves.md, .csv, .png")


if __name__ == "__main__":
    main()
