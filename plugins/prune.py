"""Pruning: ``prune-magnitude`` (unstructured), ``prune-heads`` and ``prune-ffn`` (structured).

Each prunes the model it is given (the teacher, or the previous chain step's model) and can
fine-tune afterwards to recover (``recovery: task`` on the labels, ``recovery: kd`` on the
teacher's cached logits as in Hinton et al. 2015, or ``none``).

- ``prune-magnitude`` zeroes the smallest-magnitude encoder Linear weights, ranked globally
  across layers (Han et al. 2015; Gordon et al. 2020 for BERT), in one shot or gradually along
  Zhu & Gupta's (2017) cubic schedule while fine-tuning:

      s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt))^3

  The zeros are written into the weights, so the saved model is an ordinary dense one (its
  sparse copy shows the compressed size). Dense kernels skip nothing: expect no speed-up.
- ``prune-heads`` removes whole attention heads ranked by Michel, Levy & Neubig's (2019)
  importance, I_h = E_x |dL/d xi_h|, where xi_h gates head h's output (xi = 1), computed on
  the held-out validation split and normalised per layer. The query, key, value and output
  projections lose those heads' rows and columns: the model really gets smaller.
- ``prune-ffn`` removes the same share of intermediate neurons from every layer's feed-forward
  block, ranked by the same gate gradient per neuron (a first-order Taylor criterion, Molchanov
  et al. 2017) or by weight norm, and shrinks both Linear layers.

Structured pruning works on BERT-like (``encoder.layer``) and DistilBERT (``transformer.layer``)
models; magnitude pruning on any model (all Linear and LSTM weights but the output layer when it
is not a transformer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compressbench.api import (
    ConfigError,
    Method,
    collate,
    forward_kwargs,
    hookimpl,
    kd_loss,
    length_grouped_batches,
    logits_of,
    n_tokens,
    task_loss,
)

RECOVERY = ("none", "task", "kd")


@dataclass(frozen=True)
class Recovery:
    """Fine-tuning after (or, for gradual pruning, while) pruning; epochs from `training:`."""

    recovery: str = "none"  # "task" | "kd"; Han et al. 2015 retrain after pruning
    temperature: float = 2.0  # kd recovery: Hinton et al. 2015 §2.1
    alpha: float = 0.9  # kd recovery: weight of the soft term, Hinton et al. 2015 §2

    def check_recovery(self):
        if self.recovery not in RECOVERY:
            raise ValueError(f"recovery: {self.recovery!r} is not one of {', '.join(RECOVERY)}")


def recover(ctx, model: nn.Module, params: Recovery, what: str, **train_kwargs) -> None:
    """Fine-tune ``model`` in place with the chosen recovery loss (nothing for 'none')."""
    if params.recovery == "none":
        return
    if params.recovery == "kd":
        loss = kd_loss(ctx.task.kind, params.temperature, params.alpha)
        feats = ctx.with_teacher_logits("train")
    else:
        loss, feats = ctx.supervised_loss(), ctx.features["train"]
    ctx.train(model, loss, description=f"{ctx.task.name} {what} recovery", feats=feats,
              **train_kwargs)


# --------------------------------------------------------------------------- architecture

@dataclass
class Block:
    """One transformer layer's prunable Linear layers, by their names in the model."""

    query: str
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    head_size: int


def blocks(model: nn.Module, method: str) -> list[Block]:
    """The layers of a BERT-like or DistilBERT model, else a ConfigError naming the method."""
    base = getattr(model, "base_model", None)
    prefix = getattr(model, "base_model_prefix", "")
    if base is not None and hasattr(getattr(base, "encoder", None), "layer"):  # BERT, RoBERTa
        out = []
        for i, layer in enumerate(base.encoder.layer):
            p = f"{prefix}.encoder.layer.{i}"
            out.append(Block(f"{p}.attention.self.query", f"{p}.attention.self.key",
                             f"{p}.attention.self.value", f"{p}.attention.output.dense",
                             f"{p}.intermediate.dense", f"{p}.output.dense",
                             layer.attention.self.attention_head_size))
        return out
    if base is not None and hasattr(getattr(base, "transformer", None), "layer"):  # DistilBERT
        out = []
        for i, layer in enumerate(base.transformer.layer):
            p = f"{prefix}.transformer.layer.{i}"
            out.append(Block(f"{p}.attention.q_lin", f"{p}.attention.k_lin",
                             f"{p}.attention.v_lin", f"{p}.attention.out_lin",
                             f"{p}.ffn.lin1", f"{p}.ffn.lin2",
                             layer.attention.attention_head_size))
        return out
    raise ConfigError(f"{method}: needs a BERT-like or DistilBERT transformer; got "
                      f"{type(model).__name__} (use prune-magnitude or quantization instead)")


def check_chain(name: str, facts, structured: bool) -> None:
    """Pruning needs float weights (and, structured, a transformer): a chain that quantizes
    earlier, or structured pruning of the BiLSTM, is refused before anything trains."""
    quantized = [m for m in facts.previous if m.startswith("quant-")]
    if quantized:
        raise ConfigError(f"{facts.where}: {name} comes after {quantized[0]} in this chain; "
                          f"pruning needs float weights, so put the quant-* step after the "
                          f"pruning steps")
    if structured and "bilstm" in facts.previous:
        raise ConfigError(f"{facts.where}: {name} needs a BERT-like or DistilBERT transformer, "
                          f"and the chain's bilstm step makes a BiLSTM (use prune-magnitude or "
                          f"quantization instead)")


def float_linears(model: nn.Module, layers: list[Block], method: str) -> list[Block]:
    """``layers``, after checking that their projections are plain float Linear layers."""
    for block in layers:
        if type(model.get_submodule(block.query)) is not nn.Linear:
            raise ConfigError(f"{method}: the model's layers are already quantized "
                              f"({type(model.get_submodule(block.query)).__name__}); in a "
                              f"chain, put the quant-* step after the pruning steps")
    return layers


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Magnitude pruning's targets: a transformer's encoder Linear weights (not embeddings,
    pooler or head); any other model's Linear and LSTM weights except its output layer."""
    try:
        layers = blocks(model, "prune-magnitude")
    except ConfigError:
        layers = None
    if layers is not None:
        encoder = layers[0].query.split(".layer.")[0]
        float_linears(model, layers, "prune-magnitude")
        return {f"{name}.weight": m.weight for name, m in model.named_modules()
                if isinstance(m, nn.Linear) and name.startswith(encoder + ".")}
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name != linears[-1]:
            out[f"{name}.weight"] = m.weight
        elif isinstance(m, nn.LSTM):
            out.update({f"{name}.{n}": p for n, p in m.named_parameters()
                        if n.startswith("weight_")})
    if not out:
        raise ConfigError(f"prune-magnitude: {type(model).__name__} has no Linear or LSTM "
                          f"weights to prune besides its output layer")
    return out


def sparsity_of(weights: dict[str, torch.Tensor]) -> float:
    total = sum(w.numel() for w in weights.values())
    zeros = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights.values())
    return zeros / max(1, total)


# --------------------------------------------------------------------------- magnitude

@dataclass(frozen=True)
class MagnitudeParams(Recovery):
    sparsity: float = 0.5  # s_f; Gordon et al. 2020: 30-40% costs BERT nothing, more costs
    schedule: str = "one-shot"  # or "gradual": cubic schedule, Zhu & Gupta 2017
    initial_sparsity: float = 0.0  # s_i, Zhu & Gupta 2017 eq. 1
    frequency: int = 100  # dt, steps between mask updates; Zhu & Gupta 2017 use 100-1000
    ramp: float = 0.75  # n*dt as a share of training, then train on at s_f (Zhu & Gupta 2017)

    def __post_init__(self):
        self.check_recovery()
        if not 0 <= self.initial_sparsity <= self.sparsity < 1:
            raise ValueError("need 0 <= initial_sparsity <= sparsity < 1")
        if self.schedule not in ("one-shot", "gradual"):
            raise ValueError(f"schedule: {self.schedule!r} is not 'one-shot' or 'gradual'")
        if self.schedule == "gradual" and self.recovery == "none":
            raise ValueError("schedule: gradual prunes while fine-tuning; set recovery: task "
                             "or kd")
        if self.frequency < 1 or not 0 < self.ramp <= 1:
            raise ValueError("frequency must be >= 1 and ramp in (0, 1]")


class MagnitudeMasks:
    """Global magnitude masks over a set of weights, re-applied after every optimiser step."""

    def __init__(self, weights: dict[str, nn.Parameter]):
        self.weights = weights
        self.masks = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}

    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        """Keep the (1 - sparsity) largest |w| across all weights; zero the rest."""
        flat = torch.cat([w.detach().abs().flatten() for w in self.weights.values()])  # (N,)
        keep = flat.numel() - round(sparsity * flat.numel())
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, keep, sorted=False).indices] = True
        start = 0
        for k, w in self.weights.items():
            self.masks[k] = mask[start:start + w.numel()].view_as(w)
            start += w.numel()
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for k, w in self.weights.items():
            if self.masks[k].device != w.device:  # the model moved to the training device
                self.masks[k] = self.masks[k].to(w.device)
            w.mul_(self.masks[k])


def cubic_sparsity(step: int, start: int, end: int, s_i: float, s_f: float) -> float:
    """Zhu & Gupta 2017 eq. 1, with n*dt = end - start."""
    if step <= start:
        return s_i
    if step >= end:
        return s_f
    return s_f + (s_i - s_f) * (1 - (step - start) / (end - start)) ** 3


class PruneMagnitude(Method):
    name = "prune-magnitude"
    Params = MagnitudeParams
    description = "global unstructured magnitude pruning, one-shot or gradual (Zhu & Gupta 2017)"

    def check(self, params, facts) -> None:
        check_chain(self.name, facts, structured=False)

    def build(self, ctx, params: MagnitudeParams):
        model = ctx.model()
        masks = MagnitudeMasks(prunable_weights(model))
        if params.schedule == "one-shot":
            masks.prune_to(params.sparsity)
            recover(ctx, model, params, self.name, on_step=lambda step, total: masks.apply())
        else:
            end = max(1, round(params.ramp * ctx.train_steps()))  # t_0 + n*dt, t_0 = 0

            def on_step(step: int, total: int) -> None:
                if step == 0 or step % params.frequency == 0 or step == end:
                    masks.prune_to(cubic_sparsity(step, 0, end, params.initial_sparsity,
                                                  params.sparsity))
                else:
                    masks.apply()

            recover(ctx, model, params, self.name, on_step=on_step, select_from_step=end)
            masks.prune_to(params.sparsity)  # exact target, whatever epoch was selected
        ctx.emit("pruned", {"sparsity": sparsity_of(masks.weights),
                            "weights": sum(w.numel() for w in masks.weights.values())})
        return model.eval()


# --------------------------------------------------------------------------- importance

def gate_importance(model: nn.Module, ctx, targets: list[tuple[str, int]],
                    examples: int | None) -> list[torch.Tensor]:
    """E_x |dL/d xi| for gates on the inputs of the named Linear layers, one gate per group of
    ``group`` input features (a head: its head_size outputs; a neuron: 1), per example
    (Michel et al. 2019 eq. 2), on the held-out validation split. Returns one (G,) tensor per
    target."""
    feats = ctx.features["val"][:examples] if examples else ctx.features["val"]
    gates: list[torch.Tensor | None] = [None] * len(targets)
    scores = [torch.zeros(model.get_submodule(name).in_features // group)
              for name, group in targets]

    def hook_for(i: int, group: int):
        def pre_hook(module, args):
            x = args[0]  # (B, T, G * group)
            b, t, width = x.shape
            gate = torch.ones(b, width // group, dtype=x.dtype,
                              requires_grad=True)  # (B, G): xi = 1
            gates[i] = gate
            gated = x.view(b, t, -1, group) * gate.view(b, 1, -1, 1)  # (B, T, G, group)
            return (gated.view(b, t, width),) + tuple(args[1:])
        return pre_hook

    handles = [model.get_submodule(name).register_forward_pre_hook(hook_for(i, group))
               for i, (name, group) in enumerate(targets)]
    model.eval()  # no dropout while measuring
    try:
        lengths = [n_tokens(f) for f in feats]
        for idx in length_grouped_batches(lengths, ctx.training.eval_batch_size, ctx.seed):
            batch = collate([feats[i] for i in idx], ctx.pad_id)
            logits = logits_of(model(**forward_kwargs(model, batch)))  # (B, C) or (B, T, C)
            # sum of per-example losses, so each gate's gradient is that example's alone
            loss = task_loss(ctx.task.kind, logits, batch["labels"]) * len(idx)
            grads = torch.autograd.grad(loss, gates)  # each (B, G)
            for i, g in enumerate(grads):
                scores[i] += g.abs().sum(0)
    finally:
        for h in handles:
            h.remove()
    return [s / len(feats) for s in scores]


def shrink_linear(model: nn.Module, name: str, keep: torch.Tensor, dim: int) -> None:
    """Replace Linear ``name`` by one keeping only indices ``keep`` of its output (dim 0) or
    input (dim 1) features."""
    old = model.get_submodule(name)
    w = old.weight.detach().index_select(dim, keep)
    new = nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None,
                    dtype=w.dtype, device=w.device)
    with torch.no_grad():
        new.weight.copy_(w)
        if old.bias is not None:
            new.bias.copy_(old.bias if dim == 1 else old.bias.detach()[keep])
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, new)


def expand(groups: torch.Tensor, size: int) -> torch.Tensor:
    """Feature indices of the kept groups: heads [0, 2] of size 4 -> [0..3, 8..11]."""
    return (groups.view(-1, 1) * size + torch.arange(size)).view(-1)


# --------------------------------------------------------------------------- heads

@dataclass(frozen=True)
class HeadParams(Recovery):
    fraction: float = 0.4  # share of all heads removed; Michel et al. 2019: 40% of BERT's go
    #                        "without incurring any noticeable negative impact" (MNLI)
    normalize: bool = True  # per-layer l2 normalisation, Michel et al. 2019 after Molchanov 2017
    examples: int | None = None  # validation examples for importance; None: all

    def __post_init__(self):
        self.check_recovery()
        if not 0 <= self.fraction < 1:
            raise ValueError("fraction must be in [0, 1)")


def choose_heads(importance: list[torch.Tensor], fraction: float,
                 normalize: bool) -> list[torch.Tensor]:
    """Kept head indices per layer: the globally least important go, at least one stays."""
    scores = [s / s.norm().clamp_min(1e-12) if normalize else s for s in importance]
    ranked = sorted((float(s[h]), layer, h) for layer, s in enumerate(scores)
                    for h in range(len(s)))
    remove = round(fraction * len(ranked))
    alive = [len(s) for s in scores]
    removed: set[tuple[int, int]] = set()
    for _, layer, h in ranked:
        if len(removed) >= remove:
            break
        if alive[layer] > 1:
            removed.add((layer, h))
            alive[layer] -= 1
    return [torch.tensor([h for h in range(len(s)) if (layer, h) not in removed])
            for layer, s in enumerate(scores)]


def remove_heads(model: nn.Module, layers: list[Block], keep: list[torch.Tensor]) -> None:
    for block, heads in zip(layers, keep):
        rows = expand(heads, block.head_size)
        for name in (block.query, block.key, block.value):
            shrink_linear(model, name, rows, 0)
        shrink_linear(model, block.attn_out, rows, 1)


class PruneHeads(Method):
    name = "prune-heads"
    Params = HeadParams
    description = "remove attention heads by gradient importance (Michel et al. 2019)"

    def check(self, params, facts) -> None:
        check_chain(self.name, facts, structured=True)

    def build(self, ctx, params: HeadParams):
        model = ctx.model()
        layers = float_linears(model, blocks(model, self.name), self.name)
        heads = [model.get_submodule(b.query).out_features // b.head_size for b in layers]
        importance = gate_importance(model, ctx, [(b.attn_out, b.head_size) for b in layers],
                                     params.examples)
        keep = choose_heads(importance, params.fraction, params.normalize)
        remove_heads(model, layers, keep)
        ctx.emit("pruned", {"heads_before": heads, "heads_after": [len(k) for k in keep],
                            "importance": [s.tolist() for s in importance]})
        recover(ctx, model, params, self.name)
        return model.eval()


# --------------------------------------------------------------------------- FFN neurons

@dataclass(frozen=True)
class FFNParams(Recovery):
    fraction: float = 0.5  # share of each layer's FFN neurons removed (McCarley et al. 2019 prune
    #                        BERT's FFN width per layer, structured, the same way)
    criterion: str = "taylor"  # |dL/d gate| (Molchanov et al. 2017), or "magnitude" (l2 norm)
    examples: int | None = None  # validation examples for the Taylor importance; None: all

    def __post_init__(self):
        self.check_recovery()
        if not 0 <= self.fraction < 1:
            raise ValueError("fraction must be in [0, 1)")
        if self.criterion not in ("taylor", "magnitude"):
            raise ValueError(f"criterion: {self.criterion!r} is not 'taylor' or 'magnitude'")


def set_ffn_size(model: nn.Module, size: int) -> None:
    """Keep the config true to the weights (every layer has the same width)."""
    config = model.config
    setattr(config, "hidden_dim" if hasattr(config, "hidden_dim") else "intermediate_size", size)


class PruneFFN(Method):
    name = "prune-ffn"
    Params = FFNParams
    description = "remove feed-forward neurons by importance, the same share in every layer"

    def check(self, params, facts) -> None:
        check_chain(self.name, facts, structured=True)

    def build(self, ctx, params: FFNParams):
        model = ctx.model()
        layers = float_linears(model, blocks(model, self.name), self.name)
        if params.criterion == "taylor":
            importance = gate_importance(model, ctx, [(b.ffn_out, 1) for b in layers],
                                         params.examples)
        else:  # the neuron's input row and output column, Euclidean norm
            importance = [model.get_submodule(b.ffn_in).weight.detach().norm(dim=1) *
                          model.get_submodule(b.ffn_out).weight.detach().norm(dim=0)
                          for b in layers]
        width = len(importance[0])
        kept = width - round(params.fraction * width)
        for block, scores in zip(layers, importance):
            keep = torch.topk(scores, kept).indices.sort().values  # (kept,)
            shrink_linear(model, block.ffn_in, keep, 0)
            shrink_linear(model, block.ffn_out, keep, 1)
        set_ffn_size(model, kept)
        ctx.emit("pruned", {"ffn_before": width, "ffn_after": kept})
        recover(ctx, model, params, self.name)
        return model.eval()


@hookimpl
def register_methods(register):
    register(PruneMagnitude())
    register(PruneHeads())
    register(PruneFFN())
