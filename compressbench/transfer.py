"""Transfer sets: the examples beyond the labelled ones that the teacher labels and a
distillation method trains on (Tang et al. 2019; TinyBERT, Jiao et al. 2020, §3.3; Turc et al.
2019, "Well-Read Students Learn Better").

A step's ``training.transfer`` (:class:`compressbench.suite.Transfer`) names up to three
sources: ``unlabeled`` (the task's own training texts beyond ``max_train_samples``: neither the
labelled subset nor the held-out validation; labels dropped), ``file`` (a user's texts: one
example per line, a pair's two texts tab-separated, UTF-8) and ``augment`` (copies of the
labelled examples made by a registered augmenter, :mod:`compressbench.augment`). Whatever the
source, an example whose text is that of a validation or reported example is dropped and
counted (``leaks_dropped``): the scored data never enters a transfer set.

Methods get it from :meth:`compressbench.method.Context.transfer_set`: the labelled features
with the teacher's logits, then the transfer examples with the teacher's logits, its hard
labels and ``labelled: False``. The teacher's logits are cached per teacher and inputs, so a
transfer set is labelled once per (teacher, task, transfer setting).
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from compressbench import schema
from compressbench.errors import ConfigError
from compressbench.tasks import Example


def file_digest(path: str | Path) -> str:
    """The file's sha256 (what the cache key holds), or a mark that it is missing."""
    p = Path(path)
    if not p.is_file():
        return f"missing:{p}"
    return hashlib.sha256(p.read_bytes()).hexdigest()[:20]


def read_file(path: str | Path, pair: bool, per_token: bool, where: str) -> list[Example]:
    """A transfer file's examples, or a ConfigError naming the file and line: missing, not
    UTF-8, empty, or a line with the wrong number of tab-separated texts (``pair``: two)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{where}.file: {p}: no such file (one example per line, a pair's "
                          f"two texts tab-separated)")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{where}.file: {p}:{line}: not UTF-8 (byte {exc.start}); save the "
                          f"file as UTF-8") from None
    want = 2 if pair else 1
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != want or not all(c.strip() for c in cols):
            raise ConfigError(
                f"{where}.file: {p}:{lineno}: {len(cols)} tab-separated text(s); this task "
                f"reads {want} per line ({'a sentence pair' if pair else 'one text, no tab'})")
        if per_token:
            out.append(Example(cols[0].split(), None, None))
        else:
            out.append(Example(cols[0], cols[1] if pair else None, None))
    if not out:
        raise ConfigError(f"{where}.file: {p}: empty (no example lines)")
    return out


def check(spec, task, data, pm, data_dir: Path | None, where: str) -> None:
    """Validate a step's transfer setting against its task: the file's layout, the
    augmenter and its options. ``data``: the task's prepared data (None: not read)."""
    if spec is None or spec.empty:
        return
    if spec.file is not None:
        if data is not None and data.train:
            read_file(spec.file, data.train[0].text_b is not None, task.kind.per_token, where)
        elif not Path(spec.file).is_file():
            raise ConfigError(f"{where}.file: {spec.file}: no such file")
    if spec.augment is not None:
        augmenter = pm.augmenters.get(spec.augment.rules, f"{where}.augment.rules")
        options = schema.build(augmenter.Options, spec.augment.options,
                               f"{where}.augment.options")
        if data is not None:  # validate --no-data does not look at the data directory
            augmenter.check(options, data_dir, f"{where}.augment.options")


def key(ex: Example) -> tuple:
    return (str(ex.text_a), ex.text_b)


def examples(ctx: Any, spec) -> tuple[list[Example], dict]:
    """The transfer examples of ``spec`` for the step ``ctx`` runs, and what was used: counts
    per source, and how many were dropped because their text is a validation or reported
    example's."""
    data, cfg = ctx.data, ctx.training
    scored = {key(ex) for ex in data.val} | {key(ex) for e in data.evals.values() for ex in e}
    labelled = {key(ex) for ex in data.train}
    info: dict = {"sources": {}, "leaks_dropped": 0}
    out: list[Example] = []

    def take(name: str, items: list[Example], also_drop: set) -> None:
        kept = [ex for ex in items if key(ex) not in scored and key(ex) not in also_drop]
        info["leaks_dropped"] += sum(key(ex) in scored for ex in items)
        info["sources"][name] = len(kept)
        out.extend(kept)

    if spec.unlabeled:
        pool = list(data.pool)
        random.Random(cfg.data_seed).shuffle(pool)  # the same texts for every method and seed
        chosen = [Example(ex.text_a, ex.text_b, None) for ex in pool[:spec.unlabeled]]
        info["unlabeled_available"] = len(pool)
        take("unlabeled", chosen, labelled)
    if spec.file is not None:
        pair = bool(data.train) and data.train[0].text_b is not None
        take("file", read_file(spec.file, pair, ctx.task.kind.per_token, "transfer"), set())
    if spec.augment is not None:
        a = spec.augment
        pm = ctx.plugins
        if pm is None:  # a Context made outside a run
            from compressbench.plugins import get_plugin_manager
            pm = get_plugin_manager()
        augmenter = pm.augmenters.get(a.rules, "transfer.augment.rules")
        options = schema.build(augmenter.Options, a.options, "transfer.augment.options")
        new = augmenter.augment(list(data.train), ctx.task.kind, options, a.copies, ctx.seed, ctx)
        take(f"augment:{a.rules}", [Example(e.text_a, e.text_b, None) for e in new], labelled)
    return out, info
