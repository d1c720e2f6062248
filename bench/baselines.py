"""In-process baselines on the server's own files: ONNX Runtime and sentence-transformers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

BATCH_SIZES = (1, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Throughput:
    items_per_s: float
    cpu_ms_per_item: float


class TextCeiling:
    """ONNX Runtime on the served text_encoder/1/model.onnx, on all cores, tokenizing counted."""

    def __init__(self, repository: Path, *, max_tokens: int) -> None:
        self.tokenizer = Tokenizer.from_file(
            str(repository / "text_preprocess" / "1" / "tokenizer" / "tokenizer.json")
        )
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding()
        self.session = ort.InferenceSession(
            str(repository / "text_encoder" / "1" / "model.onnx"),
            providers=["CPUExecutionProvider"],
        )
        self.names = [i.name for i in self.session.get_inputs()]

    def tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text).ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        every = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
            "pooling_mask": mask,
        }
        (out,) = self.session.run(None, {name: every[name] for name in self.names})
        return out

    def throughput(self, texts: list[str], batch: int) -> Throughput:
        """`texts` in batches of `batch`, in the order given."""
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), batch):
            self.embed(texts[start : start + batch])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return Throughput(len(texts) / wall, cpu * 1000 / len(texts))

    def by_batch(self, texts: list[str]) -> dict[int, Throughput]:
        """Sorted by length, as the ceiling should be, at every batch size."""
        ordered = sorted(texts, key=self.tokens)
        self.embed(ordered[:8])  # warm-up
        return {batch: self.throughput(ordered, batch) for batch in BATCH_SIZES}

    def burst_seconds(self, burst: list[str], *, rounds: int) -> tuple[float, float]:
        """Mean seconds for the burst as single-text batches, then as one batch."""
        self.embed(burst)
        singles = np.mean(
            [self._timed(lambda: [self.embed([t]) for t in burst]) for _ in range(rounds)]
        )
        batched = np.mean([self._timed(lambda: self.embed(burst)) for _ in range(rounds)])
        return float(singles), float(batched)

    @staticmethod
    def _timed(work) -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started


def sentence_transformers(texts: list[str], checkpoint: Path, *, batch: int = 32) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint), device="cpu")
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=batch)
    return len(texts) / (time.perf_counter() - started)
