"""Pooling, Matryoshka truncation and L2 normalization of embeddings."""

from __future__ import annotations

import numpy as np

# The floor of a row's norm, so that a zero row stays zero; np.finfo is slow to ask per request.
TINY = np.finfo(np.float32).tiny


def pool(token_embeddings: np.ndarray, pooling_mask: np.ndarray, mode: str) -> np.ndarray:
    """[batch, tokens, dim] -> [batch, dim] by "mean" over the mask or the "cls" token."""
    if mode == "cls":
        return token_embeddings[:, 0]
    weights = pooling_mask[:, :, None].astype(np.float32)
    return (token_embeddings * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def truncate_and_normalize(embeddings: np.ndarray, dimensions: int) -> np.ndarray:
    """Keep the first `dimensions` values (0 = all) of each row, then scale each row to norm 1."""
    if dimensions < 0 or dimensions > embeddings.shape[1]:
        raise ValueError(f"dimensions must be 0..{embeddings.shape[1]}, got {dimensions}")
    prefix = embeddings[:, : dimensions or None].astype(np.float32, copy=False)
    norms = np.linalg.norm(prefix, axis=1, keepdims=True)
    return prefix / np.maximum(norms, TINY)
