"""Tasks: GLUE, CoNLL-2003 and user CSV/TSV/JSON files, each with its official metric(s).

Data comes from a local data directory first (GLUE's original TSV layout under ``glue/``,
CoNLL-2003 column files under ``conll2003/``) and from the Hugging Face Hub when no directory is
given. This module is itself a plugin: its ``register_tasks`` hook is loaded through the same
entry-point group as every third-party plugin.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressbench import kinds
from compressbench.errors import DataError, HubUnavailable, did_you_mean
from compressbench.glue import GLUE, GlueSpec
from compressbench.hookspecs import hookimpl


@dataclass(frozen=True)
class Example:
    """One example. For token tasks ``text_a`` is the list of words and ``label`` one tag id per
    word; for regression ``label`` is a float; otherwise an int class id."""

    text_a: Any
    text_b: str | None
    label: Any


@dataclass(frozen=True)
class Task:
    """A dataset with its splits and official metrics.

    ``eval_splits`` are reported (GLUE dev, CoNLL test); model selection never sees them. It uses
    ``validation_split`` where the dataset has an official one (CoNLL dev), else a held-out slice
    of the training data.
    """

    name: str
    kind: kinds.TaskKind  # or its registered name (turned into the kind)
    labels: tuple[str, ...]  # class or tag names in id order; () for regression
    metrics: tuple[str, ...]  # official metrics; the first is the main one (retained %)
    load_split: Callable[[str, Path | None], list[Example]] = field(repr=False, compare=False)
    eval_splits: tuple[str, ...] = ("dev",)
    validation_split: str | None = None
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kind", kinds.get(self.kind, f"task '{self.name}': kind"))

    @property
    def main_metric(self) -> str:
        """The metric verdicts and plots use: the first of ``metrics`` (suffixed with the
        split where a task reports several, ``accuracy_dev_matched``)."""
        return self.metrics[0] if len(self.eval_splits) == 1 else \
            f"{self.metrics[0]}_{self.eval_splits[0]}"

    @property
    def num_labels(self) -> int:
        """The width of the model's head (the kind's count for ``labels``)."""
        return self.kind.num_labels(self.labels)

    def load(self, split: str, data_dir: Path | None) -> list[Example]:
        """The examples of ``split`` (``"train"``, ``"dev"``, ...) from ``data_dir`` (the
        Hub when None); a split with none is a :class:`DataError`."""
        examples = self.load_split(split, data_dir)
        if not examples:
            raise DataError(f"task '{self.name}': split '{split}' has no examples")
        return examples

    def score(self, examples: Sequence[Example], predictions: Sequence[Any]) -> dict:
        """Metrics for ``predictions`` (class ids, floats, or per-word tag ids)."""
        return self.kind.score(self, [ex.label for ex in examples], predictions)


# --------------------------------------------------------------------------- local files

def read_tsv(path: Path, header: bool = True) -> tuple[list[str], list[list[str]]]:
    """GLUE TSV: tab-separated, no quoting. Every row must have as many fields as the first."""
    import io

    text = read_text(path, "utf-8").removeprefix("\ufeff")  # MRPC has a BOM
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a long sentence is no error
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t",
                               quoting=csv.QUOTE_NONE))
    except csv.Error as exc:
        raise DataError(f"{path}: cannot be read as a TSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path}: file is empty")
    names = rows[0] if header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if header else rows
    dup = first_duplicate(names) if header else None
    if dup is not None:
        raise DataError(f"{path}:1: column {dup!r} appears twice in the header; which one holds "
                        f"the data is ambiguous: rename or remove one")

    for lineno, row in enumerate(body, start=2 if header else 1):
        if len(row) != len(names):
            raise DataError(f"{path}:{lineno}: expected {len(names)} tab-separated fields, "
                            f"found {len(row)} (is this a GLUE TSV in its original layout?)")
    return names, body


def column(path: Path, names: list[str], wanted: str) -> int:
    if wanted not in names:
        raise DataError(f"{path}: no column '{wanted}'.{did_you_mean(wanted, names)} "
                        f"Columns: {', '.join(names)}")
    return names.index(wanted)


def parse_label(raw: str, labels: tuple[str, ...], where: str,
                ids: bool = False) -> int | float:
    """A class id from a label name (or, where the task stores ids, ``ids``, as GLUE's files
    do: exactly ``0``, ``1``, ...), or a finite float for regression (``labels`` empty)."""
    if not labels:
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{where}: label {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: label {raw!r} is not a finite number (a regression "
                            f"target must be; fix or drop the row)")
        return value
    if raw in labels:
        return labels.index(raw)
    if ids:
        numbers = [str(i) for i in range(len(labels))]
        if raw in numbers:
            return numbers.index(raw)
        raise DataError(f"{where}: label {raw!r} is not one of {', '.join(labels)} (or "
                        f"their ids {', '.join(numbers)})")
    hint = did_you_mean(raw, labels)
    if raw.strip().isdigit():
        hint += (" Labels are names, not positions: write the class name, or list the labels "
                 "as they appear in the file (e.g. labels: ['0', '1'])")
    raise DataError(f"{where}: label {raw!r} is not one of {', '.join(labels)}.{hint}")


def find_dir(data_dir: Path, *candidates: str) -> Path:
    for cand in candidates:
        if (data_dir / cand).is_dir():
            return data_dir / cand
    tried = ", ".join(str(data_dir / c) for c in candidates)
    raise DataError(f"{data_dir}: no data folder for this task (looked for {tried})")


# --------------------------------------------------------------------------- GLUE

def glue_loader(name: str, spec: GlueSpec) -> Callable[[str, Path | None], list[Example]]:
    def load(split: str, data_dir: Path | None) -> list[Example]:
        if data_dir is None:
            hub_split = "train" if split == "train" else split.replace("dev", "validation")
            return hub_examples("nyu-mll/glue", name, hub_split, (*spec.hub_fields, "label"),
                                spec.labels)
        path = find_dir(data_dir, f"glue/{spec.folder}", spec.folder) / f"{split}.tsv"
        names, rows = read_tsv(path, spec.header)
        a, b, y = (column(path, names, f) if f is not None else None for f in spec.fields)
        if not rows:
            raise DataError(f"{path}: no examples (the file has only a header)")
        start = 2 if spec.header else 1
        out = []
        for i, row in enumerate(rows):
            where = f"{path}:{i + start}"
            for col in (a, b):
                if col is not None and not row[col].strip():
                    raise DataError(f"{where}: column '{names[col]}' is empty; every example "
                                    f"needs a sentence (fix or remove the line)")
            out.append(Example(row[a], row[b] if b is not None else None,
                               parse_label(row[y], spec.labels,
                                           f"{where}, column '{names[y]}'", ids=True)))
        return out
    return load


def hub_examples(dataset: str, config: str | None, split: str, fields: tuple,
                 labels: tuple[str, ...]) -> list[Example]:
    """Load a split from the Hugging Face Hub (needs internet or a warm datasets cache)."""
    try:
        import datasets
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as exc:
        raise HubUnavailable(
            f"no data directory given and loading {dataset}"
            f"{'/' + config if config else ''} [{split}] from the Hugging Face Hub failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"Offline? Pass --data-dir DIR or set COMPRESSBENCH_DATA_DIR.") from exc
    a, b, y = fields
    out = []
    for row in ds:
        label = row[y]
        if not labels:
            label = float(label)
        out.append(Example(row[a], row[b] if b else None, label))
    return out


# --------------------------------------------------------------------------- CoNLL-2003

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
CONLL_FILES = {"train": ("train.txt", "eng.train"), "validation": ("valid.txt", "eng.testa"),
               "test": ("test.txt", "eng.testb")}


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (an entity starts with ``I-``; ``B-`` only separates two adjacent entities of one
    type, as in the original CoNLL-2003 ``eng.*`` files) to IOB2 (every entity starts with
    ``B-``, as seqeval's CoNLL evaluation and ``train.txt`` expect). IOB2 input is unchanged:
    there an ``I-X`` always follows ``B-X`` or ``I-X``."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:  # prev is O or another type
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def read_conll(path: Path, tags: tuple[str, ...] = CONLL_TAGS) -> list[Example]:
    """CoNLL column format: one token per line (token POS chunk NER), blank line between
    sentences, ``-DOCSTART-`` lines skipped. The last column is the tag; files in IOB1 (the
    original ``eng.train``/``eng.testa``/``eng.testb``) are converted to IOB2, so both layouts of
    the corpus give the same examples."""
    raw: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    labels: list[str] = []
    valid = set(tags) | {t.replace("B-", "I-") for t in tags}
    text = read_text(path, "utf-8").removeprefix("\ufeff")
    for lineno, line in enumerate(text.split("\n"), start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                raw.append((words, labels))
                words, labels = [], []
            continue
        if len(parts) < 2:
            raise DataError(f"{path}:{lineno}: expected 'token ... tag' columns, "
                            f"found {line.strip()!r}")
        if parts[-1] not in valid:
            raise DataError(f"{path}:{lineno}: tag {parts[-1]!r} is not one of "
                            f"{', '.join(tags)} (IOB1 or IOB2 expected)")
        words.append(parts[0])
        labels.append(parts[-1])
    if words:
        raw.append((words, labels))
    if not raw:
        raise DataError(f"{path}: no sentences (empty, or only -DOCSTART- lines)")
    return [Example(w, None, [tags.index(t) for t in iob1_to_iob2(lab)]) for w, lab in raw]


def conll_load(split: str, data_dir: Path | None) -> list[Example]:
    if data_dir is None:
        return hub_examples("eriktks/conll2003", None, split, ("tokens", None, "ner_tags"),
                            CONLL_TAGS)
    folder = find_dir(data_dir, "conll2003", "conll")
    for fname in CONLL_FILES[split]:
        if (folder / fname).is_file():
            return read_conll(folder / fname)
    return read_conll(folder / CONLL_FILES[split][0])  # raises "not found" with the path


# --------------------------------------------------------------------------- user files

USER_TASK_KEYS = ("name", "kind", "train", "dev", "validation", "text_columns", "label_column",
                  "labels", "metrics", "encoding")


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A whole text file; a decoding error names the line and the ``encoding:`` key."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: cannot be decoded as {encoding} ({exc.reason} at byte "
                        f"{exc.start}); set the task's `encoding:` (e.g. encoding: latin-1) or "
                        f"re-save the file as UTF-8") from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r} (the task's `encoding:` key)") \
            from None


def first_duplicate(items: list):
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def unique_keys(path: Path):
    """A json ``object_pairs_hook`` that refuses an object with a key twice."""
    def hook(pairs):
        dup = first_duplicate([k for k, _ in pairs])
        if dup is not None:
            raise DataError(f"{path}: key {dup!r} appears twice in one object; rename one")
        return dict(pairs)
    return hook


def read_table(path: Path, encoding: str = "utf-8") -> list[dict]:
    """Rows of a user CSV, TSV, JSON (list of objects) or JSON Lines file as dicts. Values are
    kept as read (strings for CSV/TSV; JSON types, ``None`` for null)."""
    import io

    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl", ".ndjson"):
        raise DataError(f"{path}: unknown file type '{suffix}' (use .csv, .tsv, .json, .jsonl)")
    text = read_text(path, encoding)
    try:
        if suffix in (".csv", ".tsv"):
            sep = "," if suffix == ".csv" else "\t"
            quoting = csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE
            header = next(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting), [])
            dup = first_duplicate(header)
            if dup is not None:
                raise DataError(f"{path}:1: column {dup!r} appears twice in the header; rename "
                                f"one")
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                quoting=quoting)
            return frame.to_dict("records")
        if suffix == ".json":
            rows = json.loads(text, object_pairs_hook=unique_keys(path))
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DataError(f"{path}: expected a JSON list of objects (one per example)")
            return rows
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line, object_pairs_hook=unique_keys(path))
                except ValueError as exc:
                    raise DataError(f"{path}:{lineno}: not a JSON object: {exc}") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: expected one JSON object per line")
                rows.append(row)
        return rows
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot be parsed as {suffix[1:].upper()}: "
                        f"{str(exc).splitlines()[0]}") from exc


def cell_text(row: dict, column: str, where: str) -> str:
    """A text cell, refused when missing, null or empty (a JSON null is no sentence)."""
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise DataError(f"{where}: column '{column}' is null; every example needs a text")
    text = str(value)
    if not text.strip():
        raise DataError(f"{where}: column '{column}' is empty; every example needs a text")
    return text


def cell_label(row: dict, column: str, where: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)) or \
            not str(value).strip():
        raise DataError(f"{where}: the label (column '{column}') is empty; label every "
                        f"example or remove the row")
    return str(value)


def warn_single_classes(path: Path, label_column: str, found: list[str]) -> None:
    """Labels inferred from the data: a class seen on one row only is most likely a stray
    value (a typo, a shifted column) that would become a class of its own. Warn with the row."""
    import sys
    from collections import Counter

    counts = Counter(found)
    if len(found) < 10:  # too few rows to call any class stray
        return
    for value, n in counts.items():
        if n == 1:
            row = found.index(value) + 1
            print(f"compressbench: warning: {path}: row {row}, column '{label_column}': the label "
                  f"{value!r} appears once in the training data and becomes a class of its "
                  f"own.{did_you_mean(value, [v for v in counts if counts[v] > 1])} List the "
                  f"task's `labels:` to make a stray label an error", file=sys.stderr)
            continue
        # a rarer spelling of a frequent label ('Positive' beside 'positive', 'postive')
        like = [v for v in counts if v != value and counts[v] >= 10 * n and (
            v.lower() == value.lower() or did_you_mean(value, [v]))]
        if like:
            rows = [i + 1 for i, v in enumerate(found) if v == value][:5]
            print(f"compressbench: warning: {path}: column '{label_column}': the label {value!r} "
                  f"({n} rows: {', '.join(map(str, rows))}{', ...' if n > 5 else ''}) looks like "
                  f"a misspelling of {like[0]!r} ({counts[like[0]]} rows) and becomes a class "
                  f"of its own. Fix those rows, or list the task's `labels:` to make them an "
                  f"error", file=sys.stderr)


def file_task(name: str, kind: str, files: dict[str, Path], text_columns: Sequence[str],
              label_column: str, labels: Sequence[str] | None,
              metrics: Sequence[str] | None, encoding: str = "utf-8") -> Task:
    """A classification or regression task declared in a suite, read from local files."""
    def load(split: str, _data_dir: Path | None) -> list[Example]:
        path = files[split]
        rows = read_table(path, encoding)
        if not rows:
            raise DataError(f"{path}: no rows")
        names = list(rows[0])
        for col in (*text_columns, label_column):
            column(path, names, col)
        a, b = text_columns[0], text_columns[1] if len(text_columns) > 1 else None
        out = []
        for i, r in enumerate(rows):
            where = f"{path}: row {i + 1}"
            out.append(Example(cell_text(r, a, where),
                               cell_text(r, b, where) if b else None,
                               parse_label(cell_label(r, label_column, where), label_names,
                                           f"{where}, column '{label_column}'")))
        return out

    kind = kinds.get(kind)  # the suite checked that its files can hold this kind
    if kind.has_classes and not labels:
        rows = read_table(files["train"], encoding)
        if rows:
            column(files["train"], list(rows[0]), label_column)
        found = [cell_label(r, label_column, f"{files['train']}: row {i + 1}")
                 for i, r in enumerate(rows)]
        seen = set(found)
        if not seen:
            raise DataError(f"{files['train']}: no rows")
        warn_single_classes(files["train"], label_column, found)
        labels = sorted(seen, key=lambda v: (not v.lstrip('-').isdigit(),
                                             int(v) if v.lstrip('-').isdigit() else 0, v))
    label_names = tuple(labels or ()) if kind.has_classes else ()
    return Task(name=name, kind=kind, labels=label_names,
                metrics=tuple(metrics or kind.default_metrics),
                load_split=load, eval_splits=("dev",),
                validation_split="validation" if "validation" in files else None,
                description=f"user task from {files['train']}")


# --------------------------------------------------------------------------- registration

GLUE_DESCRIPTIONS = {
    "cola": "CoLA acceptability (MCC)", "sst2": "SST-2 sentiment (accuracy)",
    "mrpc": "MRPC paraphrase (accuracy, F1)", "stsb": "STS-B similarity (Pearson, Spearman)",
    "qqp": "QQP duplicate questions (accuracy, F1)",
    "mnli": "MNLI entailment (accuracy, matched and mismatched)",
    "qnli": "QNLI question entailment (accuracy)", "rte": "RTE entailment (accuracy)",
    "wnli": "WNLI Winograd entailment (accuracy)",
}


def builtin_tasks() -> list[Task]:
    tasks = [Task(name=name, kind="regression" if not spec.labels else "classification",
                  labels=spec.labels, metrics=spec.metrics, load_split=glue_loader(name, spec),
                  eval_splits=spec.eval_files, description=GLUE_DESCRIPTIONS[name])
             for name, spec in GLUE.items()]
    tasks.append(Task(name="conll2003", kind="token", labels=CONLL_TAGS,
                      metrics=kinds.get("token").default_metrics, load_split=conll_load,
                      eval_splits=("test",), validation_split="validation",
                      description="CoNLL-2003 NER (entity-level F1, seqeval)"))
    return tasks


@hookimpl
def register_tasks(register):
    for task in builtin_tasks():
        register(task)
