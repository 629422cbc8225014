"""``compressbench export``: one model of a run, with its tokenizer and a model card.

The exported folder is the model as the run saved it (see ``compressbench.models``), its
tokenizer files, ``README.md`` (a model card with the run's metrics and measurements, next to
the teacher's) and ``compressbench-record.json`` (the job's full result record).
"""
from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

from compressbench import cache, results
from compressbench.errors import CompressBenchError
from compressbench.models import META, load_model, saved_format


def find_record(run_dir: Path, records: list[dict], task: str, method: str,
                seed: int | None) -> dict:
    """The record to export among the run's latest ``records``, else an error naming the fix."""
    if not records:
        raise CompressBenchError(f"{run_dir}: no results ({results.RESULTS} is missing or "
                                 f"empty)")
    pairs = sorted({f"{r['task']}/{r['label']}" for r in records})
    matches = [r for r in records if r["task"] == task and r["label"] == method]
    if not matches:
        close = difflib.get_close_matches(f"{task}/{method}", pairs, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        labels = sorted({r["label"] for r in records if r["task"] == task})
        known = (f"methods for {task}: {', '.join(labels)}" if labels else
                 f"tasks: {', '.join(sorted({r['task'] for r in records}))}")
        raise CompressBenchError(f"{run_dir}: no job for --task {task} --method {method}."
                                 f"{hint} In this run, {known}")
    if seed is None and len(matches) > 1:
        seeds = ", ".join(str(r["seed"]) for r in matches)
        raise CompressBenchError(f"{task}/{method} ran with seeds {seeds}: choose one with "
                                 f"--seed")
    if seed is not None:
        matches = [r for r in matches if r["seed"] == seed]
        if not matches:
            raise CompressBenchError(f"{task}/{method}: no run with --seed {seed}")
    record = matches[0]
    if record.get("status") != "ok":
        raise CompressBenchError(f"{record['job_id']} failed ({record.get('error')}); there "
                                 f"is no model to export")
    return record


def export(run_dir: Path, task: str, method: str, out: Path, seed: int | None = None,
           force: bool = False, unsafe_pickle: bool = False) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    records = list(results.latest(results.read(run_dir)).values())
    record = find_record(run_dir, records, task, method, seed)
    source = results.model_path(run_dir, record)
    if not (source / META).is_file():
        raise CompressBenchError(f"{source}: the model of {record['job_id']} is missing (was "
                                 f"the run directory copied without models/?); re-run the "
                                 f"suite with --output {run_dir} to rebuild it from the cache")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise CompressBenchError(f"-o {out}: the folder exists and is not empty; choose "
                                     f"another or pass --force to replace it")
        shutil.rmtree(out)
    damaged = cache.check(source) if (source / cache.MANIFEST).is_file() else None  # 0.1: none
    if damaged is not None:
        raise CompressBenchError(f"{source}: the model of {record['job_id']} does not match its "
                                 f"manifest ({damaged}); re-run the suite with --output "
                                 f"{run_dir} to rebuild it")
    shutil.copytree(source, out, dirs_exist_ok=True)  # a real copy: the export ships alone
    for path in out.rglob("*"):  # the copy is the user's to edit (the cache's files are not)
        path.chmod(path.stat().st_mode | 0o200)
    try:
        load_model(out, unsafe_pickle=unsafe_pickle)  # refuse to hand over what does not load
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    teacher = next((r for r in records if r["task"] == task and r["label"] == "teacher"
                    and r.get("status") == "ok"), None)
    (out / "README.md").write_text(model_card(record, teacher, saved_format(out)),
                                   encoding="utf-8")
    (out / "compressbench-record.json").write_text(json.dumps(record, indent=2, default=str))
    return out


def fmt_bytes(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def model_card(record: dict, teacher: dict | None, fmt: str) -> str:
    steps = " → ".join(s["method"] for s in record["steps"])
    model, meas = record["model"], record.get("measure") or {}
    lines = ["---"]
    if fmt == "hf":
        lines += ["library_name: transformers"]
    lines += ["tags:", "- compressbench"] + [f"- {s['method']}" for s in record["steps"]]
    lines += ["---", "", f"# {record['task']} / {record['label']}", "",
              (f"Built by compressbench from the teacher `{record['teacher']}` with "
              f"**{steps}**, seed {record['seed']}, suite `{record['suite']}` "
              f"(sha256 {record.get('suite_sha256', '')[:12]})."), ""]
    lines += ["## Steps", "", "| step | method | parameters | training |", "|---|---|---|---|"]
    for i, s in enumerate(record["steps"], 1):
        lines.append(f"| {i} | {s['method']} | `{json.dumps(s['params'])}` | "
                     f"`{json.dumps(s['training'])}` |")
    if record.get("setting"):
        lines += ["", f"Grid setting chosen on validation: `{json.dumps(record['setting'])}`"]
    data = record["data"]
    scored = ", ".join(f"`{k[5:]}` ({v:,} examples)" for k, v in data.items()
                       if k.startswith("eval_"))
    lines += ["", "## Metrics", "",
              (f"Scored on {scored}; trained on {data['train']:,} examples, model selection "
               f"on {data['val']:,} ({data.get('val_source', '')}); main metric "
               f"`{record['main_metric']}`."), "",
              "| metric | this model | teacher |", "|---|---:|---:|"]
    for name, value in record["metrics"].items():
        if isinstance(value, int | float):
            t = (teacher or {}).get("metrics", {}).get(name)
            lines.append(f"| {name} | {value:.4f} | {'–' if t is None else f'{t:.4f}'} |")
    lines += ["", "## Size and speed", "", "| measure | this model | teacher |", "|---|---:|---:|"]
    tm = (teacher or {}).get("model", {})
    tmeas = (teacher or {}).get("measure") or {}
    rows = [("parameters", f"{model['parameters']:,}", f"{tm.get('parameters', 0):,}"),
            ("non-zero parameters", f"{model['nonzero_parameters']:,}",
             f"{tm.get('nonzero_parameters', 0):,}"),
            ("weights on disk", fmt_bytes(model["size_bytes"]), fmt_bytes(tm.get("size_bytes"))),
            ("sparse storage", fmt_bytes(model.get("sparse_size_bytes")),
             fmt_bytes(tm.get("sparse_size_bytes")))]
    if meas:
        lat, tlat = meas["latency_ms"], tmeas.get("latency_ms", {})
        rows += [("latency p50, batch 1", f"{lat['p50']:.2f} ms",
                  f"{tlat['p50']:.2f} ms" if tlat else "–"),
                 ("latency p90, batch 1", f"{lat['p90']:.2f} ms",
                  f"{tlat['p90']:.2f} ms" if tlat else "–"),
                 (f"throughput, batch {meas['throughput']['batch_size']}",
                  f"{meas['throughput']['examples_per_s']:.1f} ex/s",
                  f"{tmeas['throughput']['examples_per_s']:.1f} ex/s" if tmeas else "–"),
                 ("peak RSS", f"{meas['memory_mb']['peak_rss']:.0f} MB",
                  f"{tmeas['memory_mb']['peak_rss']:.0f} MB" if tmeas else "–")]
        if meas.get("paired"):
            rows.append(("speed-up vs the teacher, timed alternately (paired)",
                         f"{meas['paired']['speedup']:.2f}×", "1.00×"))
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if meas:
        lines += ["", (f"Measured on {meas.get('cpu', '?')} with {meas.get('threads')} thread(s), "
                      f"batch 1 at real lengths (mean {meas.get('mean_tokens', 0):.1f} tokens), "
                      f"tokenization not timed.")]
    lines += ["", "## Loading", ""] + LOADING[fmt] + [""]
    return "\n".join(lines)


LOADING = {
    "hf": ["A Hugging Face folder: `transformers` alone loads it.", "", "```python",
           "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
           ("model = AutoModelForSequenceClassification.from_pretrained(PATH)  # "
           "ForTokenClassification for NER"),
           "tokenizer = AutoTokenizer.from_pretrained(PATH)", "```"],
    "weights": [("Weights (`model.pt`, read with `torch.load(weights_only=True)`) plus a "
                "recipe in `compressbench.json` that rebuilds the module they go into "
                "(architecture from `config.json` or a named factory, resized Linear layers, "
                "then transforms such as dynamic int8 quantization); needs compressbench and "
                "the plugin that made it installed. Loading runs no code from this folder."),
                "", "```python", "import compressbench",
                "model = compressbench.load_model(PATH)", "```"],
    "torch": [("A pickled `nn.Module` from compressbench 0.1: loading it can run code from "
               "the folder. Only if you trust its source:"), "", "```python",
              "import compressbench",
              "model = compressbench.load_model(PATH, unsafe_pickle=True)", "```"],
    "state": [("A config plus a torchao `state_dict` from compressbench 0.1 (its `imports` "
               "are chosen by the folder). Only if you trust its source:"), "", "```python",
              "import compressbench",
              "model = compressbench.load_model(PATH, unsafe_pickle=True)", "```"],
}
