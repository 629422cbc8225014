"""From task examples to tensors: splits, subsets, tokenization, batches.

Every method sees exactly the same examples: the held-out validation slice and the training
subset depend only on the task, the budget knobs and ``training.data_seed``, never on the method.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compressbench.batching import mask_of, n_tokens, pad_rows
from compressbench.kinds.token import IGNORE
from compressbench.suite import Training
from compressbench.tasks import Example, Task


@dataclass(frozen=True)
class TaskData:
    """The examples of one task for one suite: train, held-out validation, reported splits."""

    task: Task
    train: list[Example]
    val: list[Example]
    evals: dict[str, list[Example]]  # split name -> examples (GLUE dev, CoNLL test)
    val_source: str  # "held out from train" or the official split's name
    #: the training split's other examples (neither the labelled subset nor validation): the
    #: unlabelled source of a transfer set (compressbench.transfer); not part of the fingerprint
    pool: list[Example] = field(default_factory=list, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """Hash of everything a trained model depends on in the data."""
        h = hashlib.sha256()
        for part in (self.train, self.val):
            for ex in part:
                h.update(json.dumps([ex.text_a, ex.text_b, ex.label]).encode())
            h.update(b"|")
        return h.hexdigest()[:16]


def subset(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or limit >= len(examples):
        return list(examples)
    idx = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in idx]


def prepare(task: Task, data_dir: Path | None, cfg: Training) -> TaskData:
    train = task.load("train", data_dir)
    if task.validation_split:
        val = subset(task.load(task.validation_split, data_dir), cfg.max_val_samples,
                     cfg.data_seed)
        source = f"official '{task.validation_split}' split"
    else:
        order = list(range(len(train)))
        random.Random(cfg.data_seed).shuffle(order)
        n_val = max(1, int(len(train) * cfg.val_fraction))
        if cfg.max_val_samples is not None:
            n_val = min(n_val, cfg.max_val_samples)
        held = set(order[:n_val])
        val = [train[i] for i in sorted(held)]
        train = [ex for i, ex in enumerate(train) if i not in held]
        source = f"{n_val} examples held out from train"
    everything = train
    train = subset(train, cfg.max_train_samples, cfg.data_seed)
    chosen = {id(ex) for ex in train}
    pool = [ex for ex in everything if id(ex) not in chosen]
    evals = {s: subset(task.load(s, data_dir), cfg.max_eval_samples, cfg.data_seed)
             for s in task.eval_splits}
    return TaskData(task, train, val, evals, source, pool)


# --------------------------------------------------------------------------- tokenization

def encode(task: Task, tokenizer, examples: list[Example], max_length: int) -> list[dict]:
    """One dict of python lists per example, as the task's kind encodes them (token tasks also
    keep ``word_starts``, to score at the word level)."""
    return task.kind.encode(tokenizer, examples, max_length)


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (dynamic padding): (B, T), or (B, K, T) for
    features with K token rows (multiple choice).

    >>> batch = collate([{"input_ids": [101, 7592, 102], "labels": 1},
    ...                  {"input_ids": [101, 102], "labels": 0}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]], [1, 0])
    """
    width = max(n_tokens(f) for f in features)
    batch: dict[str, torch.Tensor] = {}
    ids = [f["input_ids"] for f in features]
    batch["input_ids"] = torch.from_numpy(pad_rows(ids, pad_id, width))  # (B, [K,] T)
    batch["attention_mask"] = torch.from_numpy(mask_of(ids, width))  # (B, [K,] T)
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = torch.from_numpy(
            pad_rows([f["token_type_ids"] for f in features], 0, width))  # (B, [K,] T)
    first = features[0].get("labels")
    if first is not None and not isinstance(first, torch.Tensor):  # tensors: stacked below
        if isinstance(first, list):
            lab = torch.full((len(features), width), IGNORE, dtype=torch.long)  # (B, T)
            for i, f in enumerate(features):
                lab[i, :len(f["labels"])] = torch.tensor(f["labels"])
        else:
            dtype = torch.float if isinstance(first, float) else torch.long
            lab = torch.tensor([f["labels"] for f in features], dtype=dtype)  # (B,)
        batch["labels"] = lab
    for key, first in features[0].items():  # per-example tensors: teacher logits, a kind's
        # tensor labels (multi-hot (C,) -> (B, C))
        if not isinstance(first, torch.Tensor):
            continue
        if first.dim() == 0 or first.dim() == 1:
            batch[key] = torch.stack([f[key] for f in features])  # (B,) or (B, C)
        else:  # token level (T, C): padded with zeros to the batch width -> (B, T_max, C)
            out = first.new_zeros((len(features), width, *first.shape[1:]))
            for i, f in enumerate(features):
                out[i, :f[key].shape[0]] = f[key]
            batch[key] = out
    return batch


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int,
                           group: int = 50) -> list[list[int]]:
    """Shuffle, cut into mega-batches of ``group`` batches, sort each by length, then shuffle
    the batches: little padding, still random (as transformers' group_by_length)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * group
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches of similar length, for evaluation."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_id_of(model) -> int:
    config = getattr(model, "config", None)
    return getattr(config, "pad_token_id", None) or 0
