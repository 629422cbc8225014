"""The one training loop every method reuses, and evaluation.

A method hands over a model and a loss function ``loss_fn(model, batch) -> loss`` (a scalar
tensor, or ``(loss, {"part": value})`` to report the loss terms: they are shown in the progress
bar, sent with every ``train_step`` event, and averaged per epoch into the record's training
history as ``train_<part>``, beside ``train_loss``); the loop does the rest: AdamW
(fused on CPU), linear warm-up and decay, dynamic padding, length-grouped batches, gradient
clipping, seeds, a progress bar, and model selection on the held-out validation split.
"""
from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compressbench import kinds
from compressbench.batching import n_tokens
from compressbench.data import collate, length_grouped_batches, sorted_batches
from compressbench.models import forward_kwargs, logits_of
from compressbench.suite import Training
from compressbench.tasks import Example, Task

LossFn = Callable[[nn.Module, dict], "torch.Tensor | tuple[torch.Tensor, dict]"]
Emit = Callable[[str, dict], None]


def resolve_device(name: str) -> torch.device:
    """The torch device for ``training.device``: ``auto`` is CUDA where torch sees a GPU, else
    the CPU; ``cuda`` or ``mps`` without one is an error naming the fix."""
    from compressbench.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: cuda, but this torch ({torch.__version__}, CUDA "
                          f"{torch.version.cuda or 'none'}) sees no CUDA GPU; install a CUDA "
                          f"build of torch on a GPU machine, or set device: auto or cpu")
    if name == "mps" and not (hasattr(torch.backends, "mps")
                              and torch.backends.mps.is_available()):
        raise ConfigError("training.device: mps, but this torch sees no Apple GPU (MPS); set "
                          "device: auto or cpu")
    return torch.device(name)


def cpu_has_native_bf16(cpuinfo: str | None = None, machine: str | None = None) -> bool | None:
    """Whether this CPU computes bf16 matrix products in hardware (x86: AVX512-BF16 or AMX;
    Arm: the BF16 extension); None where it cannot be told. Without it torch emulates bf16,
    tens of times slower than fp32 (0.9 GFLOPS against 75 on an AVX2-only AMD EPYC)."""
    import platform

    try:
        text = cpuinfo if cpuinfo is not None else \
            Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")) and ":" in line:
            flags |= set(line.split(":", 1)[1].split())
    if not flags:
        return None
    if (machine or platform.machine()).lower() in ("x86_64", "amd64", "i686", "i386"):
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return "bf16" in flags


def autocast(device: torch.device, precision: str):
    """Mixed precision for the forward pass and the loss (``fp32``: none)."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on ``device`` (other values as they are)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def task_loss(kind, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task kind's loss against gold labels: cross-entropy (classification, token, over
    labelled positions) or mean squared error (regression). ``kind``: a task kind or its
    name."""
    return kinds.get(kind).task_loss(logits, labels)


def supervised_loss(kind) -> LossFn:
    """The plain task loss on the model's own logits (fine-tuning, no teacher)."""
    def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
        logits = logits_of(model(**forward_kwargs(model, batch)))
        return task_loss(kind, logits, batch["labels"])
    return loss_fn


@dataclass
class TrainResult:
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    best_epoch: int = 0
    best_score: float = float("nan")
    history: list[dict] = field(default_factory=list)  # one entry per validation

    def as_dict(self) -> dict:
        return {"steps": self.steps, "seconds": round(self.seconds, 2),
                "device": self.device, "precision": self.precision,
                "best_epoch": self.best_epoch, "best_val_score": self.best_score,
                "history": self.history}


def optimizer_for(model: nn.Module, cfg: Training,
                  extra: nn.Module | None = None) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    named = list(model.named_parameters())
    if extra is not None:
        named += list(extra.named_parameters())
    for name, p in named:
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:  # fused AdamW is ~7x faster per step than foreach on a 2-core CPU
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def total_steps(examples: int, batch_size: int, epochs: float) -> int:
    """Optimiser steps for ``epochs`` passes over ``examples`` (a fraction of a last epoch
    counts)."""
    return max(1, math.ceil(epochs * math.ceil(examples / batch_size)))


def train(model: nn.Module, loss_fn: LossFn, task: Task, train_feats: list[dict],
          val_feats: list[dict], val_examples: list[Example], cfg: Training, seed: int,
          emit: Emit = lambda event, data: None, pad_id: int = 0,
          description: str = "train", extra: nn.Module | None = None,
          validate: bool = True, on_step: Callable[[int, int], None] | None = None,
          select_from_step: int = 0, threads: Callable[[], int] | None = None,
          pause: Callable[[], None] | None = None) -> TrainResult:
    """Train in place; on return ``model`` holds the weights that scored best on validation.

    ``extra``: further trainable modules the loss uses (e.g. projections), optimised alongside.
    ``validate=False``: no per-epoch selection (a stage whose logits mean nothing yet, such as
    TinyBERT's intermediate-layer stage); the final weights are kept.
    ``on_step(step, total)``: called after every optimiser step (step counts from 1) and once
    with step 0 before the first; e.g. to apply pruning masks or a sparsity schedule.
    ``select_from_step``: epochs that end before this step are validated but not selectable
    (a gradual pruning schedule that has not reached its target yet).
    ``threads``: the torch thread count, re-read before every step (an executor sharing the
    cores among its jobs); ``pause``: called before every step and evaluation batch (the
    quiet turnstile: a model being timed has the machine to itself).

    Device and precision come from ``cfg`` (``training.device``, ``training.precision``):
    ``model`` and ``extra`` train there and come back to the CPU; each batch is moved there
    before ``loss_fn`` sees it, so a teacher the loss runs must be on it too
    (:meth:`compressbench.method.Context.teacher` hands it out there). The forward pass and
    the loss run under autocast for bf16 and fp16 (fp16 with a gradient scaler); weights and
    optimiser state stay fp32.
    """
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    model.to(device)
    if extra is not None:
        extra.to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    set_seed(seed)
    lengths = [n_tokens(f) for f in train_feats]
    total = total_steps(len(train_feats), cfg.batch_size, cfg.epochs)
    warmup = int(total * cfg.warmup_ratio)
    optimizer = optimizer_for(model, cfg, extra)
    trainable = list(model.parameters()) + (list(extra.parameters()) if extra else [])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup
        else max(0.0, (total - s) / max(1, total - warmup)))
    result, best_state, bad_epochs = TrainResult(), None, 0
    start, step, epoch = time.perf_counter(), 0, 0
    # read now (a worker sets it); no bar where stderr is not a terminal (a log file would get
    # a carriage-return line per update)
    bar = tqdm(total=total, desc=description, leave=False, unit="step",
               disable=bool(os.environ.get("TQDM_DISABLE")) or not sys.stderr.isatty())
    if on_step is not None:
        on_step(0, total)
    try:
        while step < total:
            epoch += 1
            model.train()
            if extra is not None:
                extra.train()
            sums: dict[str, float] = {}  # the epoch's loss and loss terms, summed per step
            steps_in_epoch = 0
            for idx in length_grouped_batches(lengths, cfg.batch_size, seed + epoch):
                if step >= total:
                    break
                if pause is not None:
                    pause()  # a model being timed has the machine to itself
                if threads is not None and threads() != torch.get_num_threads():
                    torch.set_num_threads(threads())
                batch = to_device(collate([train_feats[i] for i in idx], pad_id), device)
                with autocast(device, cfg.precision):
                    out = loss_fn(model, batch)
                loss, parts = out if isinstance(out, tuple) else (out, {})
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # clip the true gradients (a no-op unless fp16)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                scaler.step(optimizer)  # skipped when an fp16 gradient overflowed
                scaler.update()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if on_step is not None:
                    on_step(step, total)
                terms = {"loss": loss.item(), **{k: float(v) for k, v in parts.items()}}
                steps_in_epoch += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in terms.items()}, refresh=False)
                if step % 50 == 0 or step == total:
                    emit("train_step", {"step": step, "epoch": epoch,
                                        "lr": schedule.get_last_lr()[0], **terms})
            means = {f"train_{k}": v / max(1, steps_in_epoch) for k, v in sums.items()}
            means["threads"] = torch.get_num_threads()  # at the epoch's end
            if not validate:
                result.history.append({"epoch": epoch, "step": step, **means})
                continue
            score = evaluate(model, task, val_examples, val_feats, cfg.eval_batch_size,
                             pad_id, pause)[task.metrics[0]]
            eligible = step >= min(select_from_step, total)
            improved = eligible and (best_state is None or score > result.best_score)
            result.history.append({"epoch": epoch, "step": step, "val_score": score, **means})
            emit("validation", {"epoch": epoch, "metric": task.metrics[0], "value": score,
                                "best": improved})
            if improved:
                result.best_score, result.best_epoch, bad_epochs = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            elif eligible:
                bad_epochs += 1
                if cfg.patience is not None and bad_epochs >= cfg.patience:
                    break
    finally:
        bar.close()
        model.to("cpu")  # where saving, evaluation and measurement expect it
        if extra is not None:
            extra.to("cpu")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.steps, result.seconds = step, time.perf_counter() - start
    result.device, result.precision = str(device), cfg.precision
    return result


# --------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def predict(model: nn.Module, task: Task, feats: list[dict], batch_size: int = 64,
            pad_id: int = 0, pause: Callable[[], None] | None = None) -> list:
    """The task kind's predictions (class ids, floats, per-word tag ids, ...), in input order;
    ``pause``: called before every batch (see :func:`train`)."""
    model.eval()
    device = device_of(model)  # the training device during training, else the CPU
    preds: list = [None] * len(feats)
    for idx in sorted_batches([n_tokens(f) for f in feats], batch_size):
        if pause is not None:
            pause()
        batch = to_device(collate([feats[i] for i in idx], pad_id), device)
        logits = logits_of(model(**forward_kwargs(model, batch))).float().cpu()
        values = task.kind.predictions(logits, feats, idx)
        for i, v in zip(idx, values):
            preds[i] = v
    return preds


def evaluate(model: nn.Module, task: Task, examples: list[Example], feats: list[dict],
             batch_size: int = 64, pad_id: int = 0,
             pause: Callable[[], None] | None = None) -> dict:
    return task.score(examples, predict(model, task, feats, batch_size, pad_id, pause))


@torch.inference_mode()
def logits_for(model: nn.Module, feats: list[dict], batch_size: int = 64,
               pad_id: int = 0, pause: Callable[[], None] | None = None) -> list[torch.Tensor]:
    """The model's logits per example, in input order: (C,) per sequence, (T, C) per token
    sequence (T: that example's length, padding cut off). Used to label a transfer set."""
    model.eval()
    device = device_of(model)  # a teacher on the training device computes its logits there
    out: list = [None] * len(feats)
    for idx in sorted_batches([n_tokens(f) for f in feats], batch_size):
        if pause is not None:
            pause()
        batch = to_device(collate([feats[i] for i in idx], pad_id), device)
        logits = logits_of(model(**forward_kwargs(model, batch))).float().cpu()  # (B, C) ...
        for j, i in enumerate(idx):
            row = logits[j]
            out[i] = row[:n_tokens(feats[i])].clone() if row.dim() == 2 else row.clone()
    return out
