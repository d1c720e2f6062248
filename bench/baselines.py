"""In-process baselines on the server's own files: ONNX Runtime and sentence-transformers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

BATCH_SIZES = (1, 8, 16, 32, 64)


def _features(tokenizer: Tokenizer, texts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    every = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": np.zeros_like(ids),
        "pooling_mask": mask,
    }
    return {name: every[name] for name in names}


def onnx_runtime_ceiling(texts: list[str], *, repository: Path, max_tokens: int) -> dict:
    """Best texts/s over batch sizes; sorted by length, ORT on all cores, tokenizing counted."""
    tokenizer = Tokenizer.from_file(
        str(repository / "text_preprocess" / "1" / "tokenizer" / "tokenizer.json")
    )
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding()
    session = ort.InferenceSession(
        str(repository / "text_encoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    ordered = sorted(texts, key=lambda t: len(tokenizer.encode(t).ids))
    results = {}
    for batch in BATCH_SIZES:
        started = time.perf_counter()
        for start in range(0, len(ordered), batch):
            session.run(None, _features(tokenizer, ordered[start : start + batch], names))
        results[batch] = len(texts) / (time.perf_counter() - started)
    best = max(results, key=results.get)
    mean_tokens = float(np.mean([len(tokenizer.encode(t).ids) for t in texts]))
    return {
        "texts_per_s": results[best],
        "batch": best,
        "by_batch": results,
        "mean_tokens": mean_tokens,
    }


def sentence_transformers(texts: list[str], checkpoint: Path, *, batch: int = 32) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint), device="cpu")
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=batch)
    return len(texts) / (time.perf_counter() - started)
