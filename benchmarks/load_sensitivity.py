"""How much background load moves the speed-ups, and whether the local executor's measurements
are as quiet as an idle machine's (issue 26).

Times the teacher's compressed versions against the eager fp32 teacher (paired, batch 1,
1 thread, the suite's protocol), always the same models: those one suite builds, in four
conditions:

(c) under the local executor during a suite: each model measured by its own job while the
    other worker trains (the turnstile pauses it while a model is timed), read from the
    records. Round 1 is the suite that builds the models, from an empty cache of its own (so
    every job really trains: 3-layer students train beside the measurements); rounds 2..R
    run the suite again on that cache with one long training job listed first, so one worker
    trains a new student while the other measures the cached models;
(a) idle: nothing else running, every seed's model measured as its job measures it (which is
    also the alternative design, every measurement deferred to a phase after training), once
    after each round of (c): (a) and (c) alternate, so the machine's own drift over the
    benchmark (other tenants of the host, clocks) reaches both, and a difference between
    them is the executor's;
(b) synthetic load: one process on another core spinning and touching 64 MB of memory;
(b2) heavy load: two such processes per core (as on a shared CI machine).

Models: ``int8-dynamic`` (quant-dynamic, torch), ``ort-int8`` (quant-ort), ``3L-ort-int8``
(finetune 3 layers -> quant-ort) and the control (the eager teacher against a second copy of
itself). The suite runs ``--reps`` seeds; every round times every seed's models once.

    python benchmarks/load_sensitivity.py --data-dir ../shared/data --runs runs/load \
        --out reports/load-sensitivity [--reps 3] [--rounds 3]

Writes ``OUT/load-sensitivity.md``, ``.csv`` (summaries) and ``-raw.csv`` (every measurement
with its load). Speed-ups are wall-time p50 ratios; ranges are min-max over seeds and rounds;
the load columns are what each measurement recorded; p is a Mann-Whitney U test of (c) against
(a).
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

SUITE = """version: 1
name: load-{name}
teacher: {{model: embedded}}
tasks: [sst2]
methods:
{before}  - {{name: quant-dynamic, label: int8-dynamic, seeds: [{seeds}]}}
  - {{name: quant-ort, label: ort-int8, seeds: [{seeds}]}}
  - name: 3L-ort-int8
    seeds: [{seeds}]
    chain:
      - {{name: finetune, student: {{layers: 3, init: teacher-skip}}}}
      - {{name: quant-ort}}
{after}seeds: [{seeds}]
training: {{epochs: 1, batch_size: 16, learning_rate: 1.0e-4, max_seq_length: 64,
           max_train_samples: {train}, max_val_samples: 64, max_eval_samples: 256}}
measure: {{latency_samples: {samples}, warmup: 10, throughput_samples: 32,
          backends: [torch, onnxruntime]}}
"""
# the training the other worker does while models are measured in (c): in the first round,
# after the measured models (whose 3-layer students train too); in later rounds, where the
# measured models come from the cache, one long job listed first, so one worker trains while
# the other measures
TRAINERS = """  - {name: finetune, label: trainer-3L, student: {layers: 3, init: teacher-skip},
     training: {epochs: 3}}
  - {name: kd, label: trainer-kd-3L, student: {layers: 3, init: teacher-skip},
     training: {epochs: 3}}
"""
ROUND_TRAINER = """  - {{name: kd, label: trainer-round-{round}, seeds: [{seed}],
     student: {{layers: 3, init: teacher-skip}}, training: {{epochs: {epochs}}}}}
"""
MODELS = [("int8-dynamic", "torch"), ("ort-int8", "onnxruntime"),
          ("3L-ort-int8", "onnxruntime"), ("control", "torch")]

CHURN = """
import os
while True:
    block = bytearray(64 << 20)          # 64 MB, touched page by page
    for i in range(0, len(block), 4096):
        block[i] = 1
    x = sum(range(200000))
"""


def run_suite_file(path: Path, run: Path, args, executor: str,
                   cache: Path | None = None) -> list[dict]:
    from compressbench.plugins import get_plugin_manager
    from compressbench.runner import run_suite
    from compressbench.suite import load_suite

    return run_suite(load_suite(path), get_plugin_manager(), args.data_dir, run,
                     cache or args.cache, executor=executor,
                     workers=2 if executor == "local" else None)


def speedups(records: list[dict]) -> dict[str, list[tuple[float, dict]]]:
    """model -> [(speed-up vs the eager teacher, load)] from a run's records."""
    out: dict[str, list] = {name: [] for name, _ in MODELS}
    for r in records:
        if r.get("status") != "ok":
            continue
        backends = r["measure"]["backends"]
        for name, backend in MODELS:
            b = backends.get(backend) or {}
            if name == "control" and r["label"] == "teacher" and b.get("control"):
                out[name].append((b["control"]["speedup"], b.get("load") or {}))
            elif r["label"] == name and b.get("vs_eager"):
                out[name].append((b["vs_eager"]["speedup"], b.get("load") or {}))
    return out


def measure_direct(run: Path, args, reps: int,
                   every_seed: bool = False) -> dict[str, list[tuple[float, dict]]]:
    """(a), (b) and (b2): each model measured again by compressbench's measurement exactly as
    its job measured it (the teacher on the same backend and the eager teacher alongside;
    the teacher against a copy of itself for the control), ``reps`` times, rotating the order
    of the models each repetition; ``every_seed``: repetition i measures the models of the
    run's i-th seed (the run's first seed otherwise)."""
    from compressbench import results
    from compressbench.execute import Worker, Workspace, timing_sample
    from compressbench.measure import measure_model
    from compressbench.models import resolve_model_ref
    from compressbench.plugins import get_plugin_manager
    from compressbench.suite import load_suite

    suite = load_suite(run / "suite.yaml")
    pm = get_plugin_manager()
    ws = Workspace(suite, resolve_model_ref("embedded"), run, args.cache, args.data_dir)
    sample = timing_sample(Worker(ws, pm).task("sst2"))
    latest = [r for r in results.latest(results.read(run)).values() if r.get("status") == "ok"]
    out: dict[str, list] = {name: [] for name, _ in MODELS}
    for rep in range(reps):
        seed = suite.seeds[rep % len(suite.seeds)] if every_seed else suite.seeds[0]
        folder = {r["label"]: results.model_path(run, r) for r in latest
                  if r["seed"] == seed or r["label"] == "teacher"}
        teacher = folder["teacher"]
        order = MODELS[rep % len(MODELS):] + MODELS[:rep % len(MODELS)]
        for name, backend in order:
            control = name == "control"
            m = measure_model(teacher if control else folder[name], sample, suite.measure, pm,
                              reference=None if control else teacher, baseline=teacher,
                              cache_dir=args.cache, backends=[backend])["backends"][backend]
            pair = m.get("control") if control else m.get("vs_eager")
            out[name].append((pair["speedup"], m.get("load") or {}))
    return out


def add(into: dict, more: dict) -> None:
    for name, values in more.items():
        into.setdefault(name, []).extend(values)


def rank_p(a: list[tuple[float, dict]], c: list[tuple[float, dict]]) -> float | None:
    """Two-sided Mann-Whitney U p-value: do (c)'s speed-ups come from (a)'s distribution?"""
    if len(a) < 2 or len(c) < 2:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu([v for v, _ in a], [v for v, _ in c]).pvalue)


def span_s(records: list[dict]) -> float:
    """Wall time from the first job's start to the last job's end, from the records."""
    import datetime as dt

    spans = [(dt.datetime.fromisoformat(r["started_at"]), r.get("wall_s") or 0)
             for r in records if r.get("started_at")]
    if not spans:
        return 0.0
    first = min(s for s, _ in spans)
    return max((s - first).total_seconds() + w for s, w in spans)


def summary(values: list[tuple[float, dict]]) -> dict:
    xs = [v for v, _ in values]
    loads = [d.get("other_cores") for _, d in values if d.get("other_cores") is not None]
    return {"n": len(xs), "median": statistics.median(xs) if xs else None,
            "min": min(xs) if xs else None, "max": max(xs) if xs else None,
            "other_cores": max(loads) if loads else None}


def fmt(s: dict) -> str:
    if not s["n"]:
        return "–"
    return (f"{s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f}), load "
            f"{s['other_cores']:.2f} cores" if s["other_cores"] is not None else
            f"{s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f})")


def isa_flags() -> str:
    """The vector and matrix ISA flags of this CPU that decide these speed-ups."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
              "avx_vnni", "asimd", "bf16", "i8mm")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")) and ":" in line:
            flags |= set(line.split(":", 1)[1].split())
    return " ".join(f for f in wanted if f in flags) or "none of " + "/".join(wanted)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--runs", type=Path, default=Path("runs/load"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("reports/load-sensitivity"))
    ap.add_argument("--reps", type=int, default=3, help="seeds, each timed once per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds of (a) and (c); (c) from round 2 reuses the models")
    ap.add_argument("--epochs", type=int, default=8,
                    help="epochs of the job that trains beside the measurements, round 2 on")
    ap.add_argument("--samples", type=int, default=200, help="latency examples per model")
    ap.add_argument("--train", type=int, default=2000, help="training examples (c)")
    args = ap.parse_args()
    args.cache = args.cache or args.runs / "cache"
    args.runs.mkdir(parents=True, exist_ok=True)
    seeds = ", ".join(str(42 + i) for i in range(args.reps))
    timings = {"a": 0.0, "c": 0.0}
    import os
    import shutil

    def suite_run(name: str, before: str, after: str, cache: Path) -> list[dict]:
        folder = args.runs / f"suite-{name}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "suite.in.yaml").write_text(SUITE.format(
            name=name, seeds=seeds, before=before, after=after, train=args.train,
            samples=args.samples))
        return run_suite_file(folder / "suite.in.yaml", folder / "run", args, "local",
                              cache=cache)

    # (c), round 1, from an empty cache of its own, so its jobs really train; every other
    # condition then times the very models these jobs built and timed
    cache_c = args.runs / "suite-c" / "cache"
    shutil.rmtree(args.runs / "suite-c", ignore_errors=True)
    records = suite_run("c", "", TRAINERS, cache_c)
    run = args.runs / "suite-c" / "run"
    timings["c"] += span_s(records)
    during = speedups(records)
    jobs, paused = len(records), sum((r.get("quiet") or {}).get("paused_s", 0) for r in records)
    idle: dict[str, list] = {}
    for round_ in range(2, args.rounds + 1):
        # (a) and (c) alternate, so the machine's drift over the benchmark reaches both
        start = time.time()
        add(idle, measure_direct(run, args, args.reps, every_seed=True))
        timings["a"] += time.time() - start
        trainer = ROUND_TRAINER.format(round=round_, seed=100 + round_, epochs=args.epochs)
        more = suite_run(f"c{round_}", trainer, "", cache_c)
        timings["c"] += span_s(more)
        add(during, speedups(more))
        jobs += len(more)
        paused += sum((r.get("quiet") or {}).get("paused_s", 0) for r in more)
    start = time.time()
    add(idle, measure_direct(run, args, args.reps, every_seed=True))  # (a), last round
    timings["a"] += time.time() - start
    loaded_by = {}
    for key, n in (("b", 1), ("b2", 2 * (os.cpu_count() or 1))):  # (b), (b2)
        from compressbench.measure import die_with_parent  # no load left if this dies

        churn = [subprocess.Popen([sys.executable, "-c", CHURN], preexec_fn=die_with_parent)
                 for _ in range(n)]
        try:
            start = time.time()
            loaded_by[key] = measure_direct(run, args, args.reps, every_seed=True)
            timings[key] = time.time() - start
        finally:
            for p in churn:
                p.kill()
                p.wait()
    loaded, heavy = loaded_by["b"], loaded_by["b2"]

    rows = []
    for name, backend in MODELS:
        a, b, c = summary(idle[name]), summary(loaded[name]), summary(during[name])
        b2 = summary(heavy[name])
        inside = bool(a["n"] and c["n"] and a["min"] <= c["median"] <= a["max"])
        rows.append((name, backend, a, b, b2, c, inside, rank_p(idle[name], during[name])))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "load-sensitivity-raw.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "condition", "speedup", "other_cores", "cpu_pressure_pct"])
        for cond, values in (("a-idle", idle), ("b-synthetic-load", loaded),
                             ("b2-heavy-load", heavy), ("c-local-executor", during)):
            for name, _ in MODELS:
                for v, load in values.get(name, []):
                    w.writerow([name, cond, v, load.get("other_cores"),
                                load.get("cpu_pressure_pct")])
    with open(args.out / "load-sensitivity.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "backend", "condition", "n", "median", "min", "max",
                    "max_other_cores"])
        for name, backend, a, b, b2, c, *_ in rows:
            for cond, s in (("a-idle", a), ("b-synthetic-load", b), ("b2-heavy-load", b2),
                            ("c-local-executor", c)):
                w.writerow([name, backend, cond, s["n"], s["median"], s["min"], s["max"],
                            s["other_cores"]])
    import platform

    from compressbench.measure import cpu_model
    lines = ["# Speed-ups under load (issue 26)", "",
             (f"Paired speed-up against the eager fp32 teacher (wall-time p50 ratio, batch 1, "
              f"1 thread, {args.samples} SST-2 dev sentences, all-MiniLM-L6-v2) of the models "
              f"one suite built ({args.reps} seeds, trained under the local executor from an "
              f"empty cache), median and (min–max) over every seed and round. The benchmark "
              f"alternates {args.rounds} rounds of (c) and (a), so the machine's drift over "
              f"the benchmark reaches both: (c) as the jobs of a suite under the local executor "
              f"measured them (round 1 is the suite that trained them; in later rounds the "
              f"models come from its cache and one worker trains a student for "
              f"{args.epochs} epochs while the other measures); (a) each model measured again "
              f"on the idle machine, as its job measures it (the design that defers every "
              f"measurement to a phase after training); (b), (b2) the same at the end, under "
              f"a synthetic load. 'load' is the most other processes used during any "
              f"measurement, in cores. p: Mann-Whitney U test of (c) against (a). CPU: "
              f"{cpu_model()}, {platform.machine()}, flags {isa_flags()}. Control: the eager "
              f"teacher against a second copy of itself."), "",
             ("| model | backend | (a) idle | (b) synthetic load on another "
              "core | (b2) two loads per core | (c) local executor, during a suite | "
              "(b) / (a) | (b2) / (a) | (c) / (a) | (c) inside (a)'s range | p |"),
             "|---|---|---|---|---|---|---:|---:|---:|---|---:|"]

    def ratio(x: dict, a: dict) -> str:
        return f"{x['median'] / a['median']:.2f}" if a["n"] and x["n"] else "–"

    for name, backend, a, b, b2, c, inside, p in rows:
        lines.append(f"| {name} | {backend} | {fmt(a)} | {fmt(b)} | {fmt(b2)} | {fmt(c)} | "
                     f"{ratio(b, a)} | {ratio(b2, a)} | {ratio(c, a)} | "
                     f"{'yes' if inside else 'no'} | {'–' if p is None else f'{p:.2f}'} |")
    lines += ["", (f"Wall time: (c) {timings['c']:.0f} s for {jobs} jobs on 2 local "
                   f"workers, of which the training workers spent {paused:.0f} s paused while "
                   f"models were timed; (a) {timings['a']:.0f} s, (b) {timings['b']:.0f} s, "
                   f"(b2) {timings['b2']:.0f} s."), ""]
    (args.out / "load-sensitivity.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
