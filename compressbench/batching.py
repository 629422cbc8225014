"""Token rows to padded arrays (numpy only: the measuring child uses it without torch).

A feature's ``input_ids`` is one row of token ids, (T,), or one row per choice, (K, T), for
kinds whose model reads several sequences per example (multiple choice). Batches pad the last
axis to the batch's longest row: (B, T) or (B, K, T), with the mask of real tokens.
"""
from __future__ import annotations

import numpy as np

from compressbench.errors import DataError


def rows_of(ids: list) -> list[list[int]]:
    """A feature's token rows: [ids] for one sequence, the rows themselves for several."""
    return ids if ids and isinstance(ids[0], list) else [ids]


def n_tokens(feature: dict) -> int:
    """The length of a feature's longest row (what batches are sorted and padded by).

    >>> n_tokens({"input_ids": [101, 7592, 102]})
    3
    >>> n_tokens({"input_ids": [[101, 102], [101, 7, 8, 102]]})  # multiple choice: K rows
    4
    """
    return max((len(r) for r in rows_of(feature["input_ids"])), default=0)


def pad_rows(values: list[list], fill: int = 0, width: int | None = None) -> np.ndarray:
    """Per-feature rows ((T,) or (K, T) lists) -> int64 (B, T) or (B, K, T), padded with
    ``fill`` on the last axis to ``width`` (default: the longest row)."""
    nested = bool(values and values[0] and isinstance(values[0][0], list))
    lead = (len(values[0]),) if nested else ()
    if width is None:
        width = max((len(r) for v in values for r in (v if nested else [v])), default=0)
    out = np.full((len(values), *lead, width), fill, dtype=np.int64)
    for i, v in enumerate(values):
        rows = v if nested else [v]
        if nested and len(rows) != lead[0]:
            raise DataError(f"a batch mixes examples with {lead[0]} and {len(rows)} sequences "
                            "(choices); every example of a task must have the same number")
        for j, row in enumerate(rows):
            (out[i, j] if nested else out[i])[:len(row)] = row
    return out


def filled_like(ids: list, value: int) -> list:
    """A feature's rows with every token replaced by ``value``."""
    if ids and isinstance(ids[0], list):
        return [[value] * len(r) for r in ids]
    return [value] * len(ids)


def mask_of(values: list[list], width: int | None = None) -> np.ndarray:
    """1 where :func:`pad_rows` put a real token, 0 on padding: (B, T) or (B, K, T)."""
    return pad_rows([filled_like(v, 1) for v in values], 0, width)
