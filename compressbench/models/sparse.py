"""Sparse storage: each weight with enough zeros as a packed bitmask plus its non-zero values (the
compressed size of an unstructured-pruned model)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SPARSE = "sparse.safetensors"


SPARSE_MIN = 0.25  # a weight is stored sparse from this fraction of zeros (a bitmask costs 1/32)


def write_sparse(model: nn.Module, path: Path) -> bool:
    """Write the model's state with every weight matrix that has at least ``SPARSE_MIN``
    zeros as a bitmask plus its non-zero values (other tensors as they are); nothing when no
    matrix qualifies. Returns whether it wrote."""
    from safetensors.torch import save_file

    state = {k: v for k, v in model.state_dict().items()
             if isinstance(v, torch.Tensor) and type(v) is torch.Tensor and not v.is_quantized}
    out, sparse = {}, False
    for name, t in state.items():
        matrix = t.is_floating_point() and t.dim() >= 2  # weights; biases stay dense
        zeros = t.numel() - int(torch.count_nonzero(t)) if matrix else 0
        if matrix and zeros >= SPARSE_MIN * t.numel():
            flat = t.detach().reshape(-1)
            mask = flat != 0  # (N,) bool
            out[f"{name}::mask"] = pack_bits(mask)
            out[f"{name}::values"] = flat[mask].contiguous()
            out[f"{name}::shape"] = torch.tensor(t.shape, dtype=torch.int64)
            sparse = True
        else:
            out[name] = t.detach().contiguous()
    if sparse:
        save_file(out, str(path))
    return sparse


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(N,) bool -> (ceil(N/8),) uint8, most significant bit first."""
    pad = (-mask.numel()) % 8
    bits = torch.cat([mask, mask.new_zeros(pad)]).view(-1, 8).to(torch.uint8)  # (N/8, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (bits * weights).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
    return ((packed.unsqueeze(1) >> shifts) & 1).view(-1)[:n].bool()  # (N,)


def load_sparse(path: Path) -> dict[str, torch.Tensor]:
    """The dense state dict stored in a ``sparse.safetensors`` file."""
    from safetensors.torch import load_file

    raw = load_file(str(path))
    state = {}
    for key, value in raw.items():
        if "::" not in key:
            state[key] = value
        elif key.endswith("::mask"):
            name = key[:-len("::mask")]
            shape = tuple(raw[f"{name}::shape"].tolist())
            n = 1
            for d in shape:
                n *= d
            mask = unpack_bits(value, n)
            values = raw[f"{name}::values"]
            flat = values.new_zeros(n)
            flat[mask] = values
            state[name] = flat.view(shape)
    return state


def sparse_size(folder: Path) -> int | None:
    path = Path(folder) / SPARSE
    return path.stat().st_size if path.is_file() else None
