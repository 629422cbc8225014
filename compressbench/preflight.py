"""Everything that can be known wrong before training starts, checked by both ``validate`` and
``run``: names and parameters (``suite.check``), the teacher's shape against the suite, every
task's data files read in full, and each method's own preconditions (``Method.check``).

Nothing here trains or runs a method's ``build``; a method's ``check`` only looks at its
parameters and these facts. After it passes, a job can still fail for reasons that depend on
training (a loss that diverges), never for one the suite and its files already showed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from compressbench import data as D
from compressbench import models, transfer
from compressbench.errors import ConfigError, HubUnavailable
from compressbench.suite import Suite, check, grid_settings, method_params, with_setting
from compressbench.tasks import Task


@dataclass(frozen=True)
class Facts:
    """What a method's ``check(params, facts)`` may use (all known before training)."""

    task: Task
    data: D.TaskData | None  # the task's examples as every method sees them (None: --no-data)
    teacher_config: Any | None  # the teacher's transformers config; None if it could not be read
    data_dir: Path | None  # the suite's data directory (--data-dir), None for the Hub
    suite_path: Path
    where: str  # "<suite file>: methods[i]" (or ".chain[j]"), to prefix an error
    previous: tuple[str, ...] = ()  # the methods of the earlier steps of this chain, in order


def teacher_config(ref: str) -> tuple[Any | None, str | None]:
    """The teacher's config (a local folder, or the Hub when online), else (None, why)."""
    models.refuse_remote_code(ref, "teacher")  # an error, not a skipped check
    try:
        import transformers

        models.quiet_transformers()
        return transformers.AutoConfig.from_pretrained(ref, **models.NO_REMOTE_CODE), None
    except Exception as exc:  # offline with a Hub id, typically
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, (f"teacher.model '{ref}' could not be read here ({first[:120]}): the "
                      f"checks of student layers and max_seq_length against it were skipped")


def check_heads(spec: models.StudentSpec, config: Any, key: str) -> None:
    """A student's hidden size must split evenly into its attention heads; a truncated one
    must be narrower than the teacher and keep its head size."""
    if spec.shrink and config is not None and hasattr(config, "num_attention_heads"):
        try:
            models.student_config(config, spec)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    hidden = spec.hidden_size or getattr(config, "hidden_size", None)
    heads = spec.num_attention_heads or getattr(config, "num_attention_heads", None)
    if hidden and heads and hidden % heads:
        raise ConfigError(f"{key}: hidden_size {hidden} is not divisible by "
                          f"num_attention_heads {heads} (each head gets hidden_size / heads "
                          f"dimensions); choose e.g. hidden_size {heads * max(1, hidden // heads)} "
                          f"or a head count that divides {hidden}")


def looks_like_path(ref: str) -> bool:
    """A local path rather than a Hub id ('org/name'): starts with '/', '.', '~' or a drive."""
    return ref.startswith(("/", "./", "../", "~", ".\\")) or (len(ref) > 2 and ref[1] == ":")


def student_specs(params: Any, where: str):
    """Every ``StudentSpec`` among a parameter dataclass's fields, with its key path."""
    if params is None or not is_dataclass(params):
        return
    for f in fields(params):
        value = getattr(params, f.name)
        if isinstance(value, models.StudentSpec):
            yield f"{where}.{f.name}", value


def preflight(suite: Suite, pm, data_dir: Path | None, teacher_ref: str,
              prepare: bool = True, skip_hub: bool = False,
              execution=None) -> tuple[dict[str, D.TaskData], list[str]]:
    """Check the whole suite; returns each task's prepared data and notes on what was skipped.
    Raises :class:`ConfigError` / :class:`DataError` naming the file, key and fix.
    ``skip_hub`` (``validate``): a task whose data must come from the Hugging Face Hub, which
    cannot be reached, gets a note instead of an error (``run`` needs the data)."""
    from compressbench.plan import resolve_task

    w = str(suite.path)
    check(suite, pm)
    notes: list[str] = []
    if looks_like_path(suite.teacher.model) and not Path(teacher_ref).exists():
        raise ConfigError(f"{w}: teacher.model: {suite.teacher.model}: no such folder (paths "
                          f"are relative to the suite file or the working directory)")
    config, why = teacher_config(teacher_ref)
    if why:
        notes.append(why)
    if config is not None:
        positions = getattr(config, "max_position_embeddings", None)
        if positions and suite.training.max_seq_length > positions:
            raise ConfigError(f"{w}: training.max_seq_length: {suite.training.max_seq_length} is "
                              f"more than the teacher's {positions} position embeddings; set it "
                              f"to at most {positions}")
    prepared: dict[str, D.TaskData] = {}
    from_hub: list[tuple[str, str]] = []  # tasks whose Hub data could not be read, and why
    tasks = [resolve_task(suite, item, pm) for item in suite.tasks]
    for i, task in enumerate(tasks):
        if prepare:
            try:
                prepared[task.name] = D.prepare(task, data_dir, suite.training)
            except HubUnavailable as exc:
                if not skip_hub:
                    raise
                from_hub.append((task.name, type(exc.__cause__).__name__))
        task.kind.check_task(task, f"{w}: tasks[{i}]")
    if from_hub:
        notes.append(f"tasks {', '.join(n for n, _ in from_hub)}: their data comes from the "
                     f"Hugging Face Hub, which cannot be reached here ({from_hub[0][1]}): the "
                     f"checks of their data were skipped (--data-dir DIR checks local files)")
    layers = getattr(config, "num_hidden_layers", None)
    for entry in suite.methods:
        for index, step in enumerate(entry.steps):
            previous = tuple(s.method for s in entry.steps[:index])
            method = pm.methods.get(step.method)
            runtime = getattr(method, "runtime", None)
            if runtime and index < len(entry.steps) - 1:
                raise ConfigError(f"{w}: {step.where}: {step.method} makes a model that exists "
                                  f"only for {runtime}, so it must be the last step of its "
                                  f"chain; move {entry.steps[index + 1].method} before it")
            for setting in grid_settings(step):
                one = with_setting(step, method, setting) if step.grid else step
                params = method_params(method, one, w)
                for key, spec in student_specs(params, f"{w}: {step.where}"):
                    if looks_like_path(spec.init) and not Path(
                            models.resolve_model_ref(spec.init, suite.base)).exists():
                        raise ConfigError(f"{key}.init: {spec.init}: no such folder (a "
                                          f"pretrained student checkpoint)")
                    if layers and spec.layers is not None and spec.layers > layers:
                        raise ConfigError(f"{key}.layers: {spec.layers} is more than the "
                                          f"teacher's {layers} layers; use at most {layers}")
                    check_heads(spec, config, key)
                if getattr(method, "uses_transfer", False):
                    defaults = getattr(method, "training_defaults", {})
                    cfg = suite.training_for({**defaults, **one.training}, step.where)
                    for task in tasks:
                        transfer.check(cfg.transfer, task, prepared.get(task.name), pm,
                                       data_dir, f"{w}: {step.where}.training.transfer")
                if callable(getattr(method, "check", None)):
                    for task in tasks:
                        method.check(params, Facts(task, prepared.get(task.name), config,
                                                   data_dir, suite.path,
                                                   f"{w}: {step.where}", previous))
    check_backends(suite, pm, w)
    from compressbench import executors

    executor, settings = executors.resolve(execution or suite.execution, pm, f"{w}: execution")
    notes += executor.notes(settings)
    if executor.on_this_machine:  # a cluster's devices are checked when run joins it
        check_devices(suite)
        for warning in bf16_warnings(suite):
            print(f"compressbench: warning: {warning}", file=sys.stderr)
    return prepared, notes


def training_settings(suite: Suite) -> list[tuple[str, dict]]:
    """(where, overrides) of every training section: the suite's, the teacher's, each step's."""
    out = [("", {}), ("teacher.", suite.teacher.training)]
    out += [(f"{step.where}.", step.training) for m in suite.methods for step in m.steps]
    return out


def check_devices(suite: Suite) -> None:
    """Every ``training.device`` the suite names (suite-wide, teacher, methods) exists on this
    machine, before anything trains."""
    from compressbench.training import resolve_device

    for where, over in training_settings(suite):
        name = over.get("device", suite.training.device if not where else None)
        if name:
            try:
                resolve_device(name)
            except ConfigError as exc:
                raise ConfigError(f"{suite.path}: {where}{exc}") from None


def bf16_warnings(suite: Suite) -> list[str]:
    """A warning for bf16 training on a CPU that has no bf16 hardware (it is emulated there)."""
    from compressbench.training import cpu_has_native_bf16, resolve_device

    out = []
    for where, over in training_settings(suite):
        precision = over.get("precision", suite.training.precision if not where else None)
        device = over.get("device", suite.training.device)
        if precision != "bf16" or resolve_device(device).type != "cpu":
            continue
        if cpu_has_native_bf16() is False:
            out.append(f"{suite.path}: {where}training.precision: bf16 trains on this CPU "
                       f"({models_cpu()}), which has no bf16 hardware (no AVX512-BF16 or AMX): "
                       f"torch emulates it, tens of times slower than fp32. Set precision: "
                       f"fp32 here, or train on a GPU or a CPU with AMX")
    return out


def models_cpu() -> str:
    from compressbench.measure import cpu_model

    return cpu_model()


def check_backends(suite: Suite, pm, where: str) -> None:
    """Every backend the suite measures on is registered and can run on this machine."""
    from compressbench.measure.backend import backend_options

    for name in suite.measure.backends:
        backend = pm.backends.get(name, f"{where}: measure.backends")
        why = backend.missing() if suite.measure.enabled else None
        if why:
            raise ConfigError(f"{where}: measure.backends: {name}: {why} (or remove it from "
                              f"the list)")
        backend_options(backend, suite.measure.backend_options.get(name),
                        f"{where}: measure.backends.{name}")
    unknown = sorted(set(suite.measure.backend_options) - set(suite.measure.backends))
    if unknown:
        raise ConfigError(f"{where}: measure.backend_options: {unknown[0]!r} is not in "
                          f"measure.backends")
