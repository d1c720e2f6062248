"""Rows of merged requests regrouped into chunks, so little compute goes to padding.

On a CPU a batch costs what its longest row costs. The dynamic batcher hands the tower requests
of different widths (ragged batching); their rows are sorted by length across requests and run in
chunks, each cut to its own longest row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def stack_ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack [rows, width] arrays of different widths, right-padding with zeros.

    The padded positions are masked out by the attention mask, so their values never reach a
    real token.
    """
    width = max(a.shape[1] for a in arrays)
    out = np.zeros((sum(a.shape[0] for a in arrays), width), dtype=arrays[0].dtype)
    start = 0
    for a in arrays:
        out[start : start + a.shape[0], : a.shape[1]] = a
        start += a.shape[0]
    return out


@dataclass(frozen=True)
class Chunk:
    rows: np.ndarray  # indices into the merged batch
    width: int | None  # the longest real row in the chunk; None: rows of one fixed shape


def length_chunks(lengths: np.ndarray, *, chunk_rows: int) -> Iterator[Chunk]:
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), chunk_rows):
        rows = order[start : start + chunk_rows]
        yield Chunk(rows=rows, width=max(int(lengths[rows].max()), 1))


def row_chunks(count: int, *, chunk_rows: int) -> Iterator[Chunk]:
    for start in range(0, count, chunk_rows):
        yield Chunk(rows=np.arange(start, min(start + chunk_rows, count)), width=None)
