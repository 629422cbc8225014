"""What a compression method is, and what it gets to work with.

A method is an object with a ``name``, an optional ``Params`` dataclass (its YAML parameters)
and ``build(ctx, params) -> nn.Module``. It supplies a model and a loss; training goes through
``ctx.train`` (the shared loop), so every method is trained, selected and measured alike.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from compressbench import cache, models, safefs, training
from compressbench.data import TaskData
from compressbench.suite import Training
from compressbench.tasks import Example, Task


class Method:
    """Base class for methods (subclassing is optional: the attributes are the contract)."""

    name: str = ""  # the name in YAML, registries, records and reports
    Params: type | None = None  # a dataclass; None when the method takes no parameters
    description: str = ""  # one line, shown by `compressbench plugins`
    version: str = "1"  # bump to invalidate cached models when the method's code changes
    # training settings this method needs by default (e.g. a larger learning rate); a suite
    # entry's own `training:` overrides them
    training_defaults: ClassVar[dict] = {}
    # it trains on ctx.transfer_set(): a step's `training.transfer` is then part of its cache
    # key (a method without it ignores a suite-wide transfer set; an entry of its own is an
    # error)
    uses_transfer: ClassVar[bool] = False

    def build(self, ctx: Context, params: Any) -> nn.Module:
        """Build this step's model: start from ``ctx.model()`` (to transform one) or a
        student (``ctx.make_student``), train it with ``ctx.train``, return it. ``params``:
        an instance of :attr:`Params` (the suite entry's keys), or None without one."""
        raise NotImplementedError

    def uses_teacher(self, params: Any) -> bool:
        """Whether this step learns from the teacher (its outputs, states or the examples it
        labels) with ``params``. A step that does not, and describes its student
        (:meth:`Context.describe_student`), is the no-distillation baseline of every method that
        trains the same student with the same training settings and does; the report compares
        the two. Override it where params can switch the teacher off (a weight of 0)."""
        return True

    def check(self, params: Any, facts: Any) -> None:
        """Optional: raise :class:`compressbench.ConfigError` (prefixed with ``facts.where``)
        when this method cannot run on ``facts.task`` with ``params``; called by ``validate`` and
        before a run trains anything, once per task and grid setting. Must be cheap and must
        not train (``facts``: :class:`compressbench.preflight.Facts`)."""


PRETRAINED = "pretrained teacher"
#: (record key, transformers config attribute) of a student's shape
STUDENT_SHAPE = (("layers", "num_hidden_layers"), ("hidden_size", "hidden_size"),
                 ("heads", "num_attention_heads"), ("intermediate_size", "intermediate_size"),
                 ("layers", "n_layers"), ("hidden_size", "dim"), ("heads", "n_heads"),
                 ("intermediate_size", "hidden_dim"))


@dataclass
class Context:
    """Everything one method step may use. Models handed out are fresh copies."""

    task: Task  # the task: name, kind, labels, metrics
    data: TaskData  # its examples: train, val (held out for model selection), evals
    tokenizer: Any  # the teacher's tokenizer
    features: dict[str, list[dict]]  # "train", "val", and each reported split
    training: Training  # this step's training settings (suite + teacher/method overrides)
    seed: int  # this job's seed (torch's generators are seeded with it before build)
    pretrained_ref: str  # the teacher before fine-tuning: HF id or local path
    cache_dir: Path  # a folder this step may use for its own caches
    emit: Callable[[str, dict], None]  # emit(event, data): reaches every job_event hook
    load_teacher: Callable[[], nn.Module]  # the fine-tuned teacher for this task
    load_input: Callable[[], nn.Module]  # the previous chain step's model, else the teacher
    teacher_outputs_dir: Path | None = None  # shared cache of the teacher's logits
    data_dir: Path | None = None  # the suite's data directory (e.g. for a POS lexicon)
    #: set by the executor: the torch thread count, re-read every step (None: torch's own),
    #: and the pause point before every step and evaluation batch (the quiet turnstile)
    threads: Callable[[], int] | None = None
    pause: Callable[[], None] | None = None
    train_results: list[dict] = field(default_factory=list)  # each train()'s, for the record
    student: dict | None = None  # what describe_student recorded (the job's record keeps it)
    plugins: Any = None  # the run's plugin manager (augmenters, tasks, ... by name)
    #: a cache shared by every task and job of the cache folder, for what does not depend on
    #: the task (a general-distilled student): key its entries by everything they depend on
    shared_dir: Path | None = None
    transfer: dict | None = None  # what transfer_set used (the job's record keeps it)

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id (0 when it has none): ``api.collate(feats, ctx.pad_id)``."""
        return self.tokenizer.pad_token_id or 0

    @property
    def device(self) -> torch.device:
        """Where this step trains (``training.device`` resolved: ``auto`` is CUDA where
        present). ``ctx.train`` moves the model and each batch there by itself; a module your
        loss runs besides the model (a teacher you loaded yourself) goes there with
        ``module.to(ctx.device)``."""
        return training.resolve_device(self.training.device)

    def teacher(self) -> nn.Module:
        """The fine-tuned teacher for this task, in eval mode, on :attr:`device` (where the
        loss that runs it will get its batches)."""
        return self.load_teacher().to(self.device).eval()

    def model(self) -> nn.Module:
        """The model this step starts from: the previous chain step's output, or the teacher."""
        return self.load_input()

    def pretrained(self) -> nn.Module:
        """The teacher's pretrained encoder with a fresh task head (not fine-tuned)."""
        model = models.load_pretrained(self.pretrained_ref, self.task.kind, self.task.num_labels)
        model.compressbench_source = PRETRAINED  # what describe_student names as the source
        return model

    def make_student(self, spec: models.StudentSpec, source: nn.Module | None = None) -> nn.Module:
        """A student built from ``source`` (default: the pretrained teacher) per ``spec``, and
        described for the record (:meth:`describe_student`)."""
        source = source if source is not None else self.pretrained()
        student = models.make_student(source, spec)
        shrink = {"shrink": spec.shrink} if spec.shrink else {}
        self.describe_student(student, init=spec.init, **shrink,
                              source=getattr(source, "compressbench_source", "given model"))
        return student

    def describe_student(self, model: nn.Module, **facts: Any) -> dict:
        """Record what the student is: its class, its shape (from a transformers config:
        layers, hidden size, heads, FFN size) and ``facts`` (JSON values: how it was
        initialised and from what, a shape the class does not expose). The report compares a
        distillation method only with a no-distillation row whose description is equal, so
        name everything that makes two students differ. :meth:`make_student` calls it; a
        method that builds its student otherwise calls it itself."""
        config = getattr(model, "config", None)
        shape = {key: getattr(config, attr) for key, attr in STUDENT_SHAPE
                 if config is not None and isinstance(getattr(config, attr, None), int)}
        self.student = {"class": type(model).__name__, **shape, **facts}
        return self.student

    def supervised_loss(self) -> training.LossFn:
        """The plain task loss as a ``loss_fn(model, batch)`` for :meth:`train`: cross-entropy,
        MSE for regression, token cross-entropy ignoring ``IGNORE`` (the task kind's)."""
        return training.supervised_loss(self.task.kind)

    def teacher_logits(self, feats: list[dict] | str = "train") -> list[torch.Tensor]:
        """The fine-tuned teacher's logits for ``feats`` (a split name or encoded examples), one
        tensor per example: (C,), or (T, C) for token tasks. Computed once per teacher and
        inputs, then read from the cache by every method that needs only logits."""
        feats = self.features[feats] if isinstance(feats, str) else feats
        digest = hashlib.sha256(json.dumps([f["input_ids"] for f in feats]).encode())
        path = (self.teacher_outputs_dir / f"{digest.hexdigest()[:20]}.pt"
                if self.teacher_outputs_dir else None)
        if path is not None and path.is_file():
            problem = cache.check_file(path)
            if problem is None:
                self.emit("teacher_logits", {"examples": len(feats), "cached": True})
                return torch.load(path, weights_only=True)
            self.emit("cache_damaged", {"path": str(path), "problem": problem})
            print(f"compressbench: warning: cached teacher logits {path} are damaged "
                  f"({problem}); computing them again", file=sys.stderr)
        logits = training.logits_for(self.teacher(), feats, self.training.eval_batch_size,
                                     self.pad_id, self.pause)
        if path is not None:
            buf = io.BytesIO()
            torch.save(logits, buf)
            tmp = safefs.write_atomic(path.with_name(f".{path.name}.{os.getpid()}.part"),
                                      buf.getvalue())
            cache.seal_file(tmp, path)
        self.emit("teacher_logits", {"examples": len(feats), "cached": False})
        return logits

    def with_teacher_logits(self, feats: list[dict] | str = "train") -> list[dict]:
        """``feats`` with each example's teacher logits under ``"teacher_logits"`` (the shared
        loop's batches then carry them: (B, C), or (B, T, C) for token tasks)."""
        rows = self.features[feats] if isinstance(feats, str) else feats
        return [{**f, "teacher_logits": t} for f, t in zip(rows, self.teacher_logits(rows))]

    def transfer_set(self) -> list[dict]:
        """The labelled training features with the teacher's logits, then this step's transfer
        set (``training.transfer``, see :mod:`compressbench.transfer`) labelled by the teacher:
        each transfer example carries ``teacher_logits``, the teacher's hard label under
        ``labels`` and ``labelled`` False (the labelled ones True), so a loss can keep its
        task term to gold labels (:func:`compressbench.losses.gold_loss`). Without a transfer
        set it is :meth:`with_teacher_logits` of ``"train"``, unchanged. A method that calls
        it sets ``uses_transfer = True`` (the setting is then part of its cache key). What was
        used (counts per source, leaks dropped, labelling time) goes into the job's record."""
        from compressbench import transfer
        from compressbench.data import encode

        base = self.with_teacher_logits("train")
        spec = self.training.transfer
        if spec is None or spec.empty:
            return base
        start = time.perf_counter()
        examples, info = transfer.examples(self, spec)
        kind = self.task.kind
        examples = [Example(ex.text_a, ex.text_b, kind.placeholder_label(ex)) for ex in examples]
        feats = encode(self.task, self.tokenizer, examples, self.training.max_seq_length)
        logits = self.teacher_logits(feats) if feats else []
        extra = [{**f, "labels": kind.hard_label(z, f), "teacher_logits": z,
                  "labelled": torch.tensor(False)} for f, z in zip(feats, logits)]
        info.update(labelled=len(base), transfer=len(extra),
                    label_s=round(time.perf_counter() - start, 2))
        self.transfer = info
        self.emit("transfer_set", info)
        return [{**f, "labelled": torch.tensor(True)} for f in base] + extra

    def train_steps(self, feats: list[dict] | None = None, epochs: float | None = None) -> int:
        """How many optimiser steps ``train`` will take on ``feats`` (default: the training
        subset) for ``epochs`` (default: this step's training settings)."""
        n = len(feats if feats is not None else self.features["train"])
        return training.total_steps(n, self.training.batch_size,
                                    self.training.epochs if epochs is None else epochs)

    def train(self, model: nn.Module, loss_fn: training.LossFn,
              description: str | None = None, *, feats: list[dict] | None = None,
              extra: nn.Module | None = None, epochs: float | None = None,
              validate: bool = True, on_step: Callable[[int, int], None] | None = None,
              select_from_step: int = 0) -> training.TrainResult:
        """Run the shared training loop on ``feats`` (default: this task's training subset),
        selecting the best epoch on the held-out validation split (unless ``validate=False``).

        ``loss_fn(model, batch)``: a scalar tensor, or ``(loss, {"term": float})`` to show and
        keep the terms. ``description``: the progress bar's and the record's name for this
        stage (default: the task's name). ``extra``: one more trainable module the loss uses
        (projections, a head of your own), trained with the model and moved to
        :attr:`device`; group several in an ``nn.ModuleList``. ``epochs``: this stage's epochs
        (default: the step's ``training.epochs``). ``on_step(step, total)``: called after each
        optimiser step, and with 0 before the first (pruning masks, schedules).
        ``select_from_step``: epochs ending earlier are validated but never selected. Returns
        the run's :class:`~compressbench.training.TrainResult` (steps, epochs, validation
        scores); the record keeps it."""
        cfg = self.training if epochs is None else replace(self.training, epochs=epochs)
        result = training.train(
            model, loss_fn, self.task, feats if feats is not None else self.features["train"],
            self.features["val"], self.data.val, cfg, self.seed, emit=self.emit,
            pad_id=self.pad_id, description=description or f"{self.task.name}", extra=extra,
            validate=validate, on_step=on_step, select_from_step=select_from_step,
            threads=self.threads, pause=self.pause)
        self.train_results.append(result.as_dict())
        return result
