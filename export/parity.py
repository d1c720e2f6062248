"""Parity of exported graphs with the PyTorch models they came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_repository import wire

FP32_MIN_COSINE = 0.9999


class ParityError(RuntimeError):
    """An exported graph disagrees with its PyTorch reference beyond the threshold."""


@dataclass(frozen=True)
class ParityReport:
    probes: int
    compared: str  # the graph output compared, e.g. "sentence_embedding"
    min_cosine: float
    mean_cosine: float
    threshold: float
    worst_probe: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(axis=-1)


def run_onnx(onnx_path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    (output,) = session.run(None, {k: v for k, v in feeds.items() if k in wanted})
    return output


def compare(
    cosines: np.ndarray,
    labels: list[str],
    *,
    compared: str,
    threshold: float = FP32_MIN_COSINE,
) -> ParityReport:
    """Turn per-probe cosines into a report; raise ParityError below `threshold`."""
    worst = int(np.argmin(cosines))
    report = ParityReport(
        probes=len(labels),
        compared=compared,
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        threshold=threshold,
        worst_probe=labels[worst],
    )
    if report.min_cosine < threshold:
        raise ParityError(
            f"{compared}: min cosine {report.min_cosine:.6f} < {threshold} "
            f"on probe {labels[worst]!r}"
        )
    return report


def check_sentence_transformer(
    model,
    onnx_path: Path,
    probes: tuple[str, ...],
    *,
    pooled: bool = True,
    threshold: float = FP32_MIN_COSINE,
) -> ParityReport:
    """Compare the text graph with the sentence-transformers `model` on `probes`.

    A pooling graph is compared sentence by sentence; a token-level graph token by token (the
    worst token of a probe is that probe's score).
    """
    features = {
        k: v.numpy().astype(np.int64)
        for k, v in model.preprocess(list(probes)).items()
        if k in wire.TOKENIZER_FEATURES
    }
    # With no prompt the reference pools over the attention mask.
    features[wire.POOLING_MASK] = features[wire.ATTENTION_MASK]
    exported = run_onnx(onnx_path, features)
    if pooled:
        cosines = cosine_rows(model.encode(list(probes), convert_to_numpy=True), exported)
    else:
        tokens = model.encode(list(probes), output_value="token_embeddings")
        cosines = np.array(
            [
                cosine_rows(ref.numpy(), exported[i, : len(ref)]).min()
                for i, ref in enumerate(tokens)
            ]
        )
    compared = wire.SENTENCE_EMBEDDING if pooled else wire.TOKEN_EMBEDDINGS
    return compare(cosines, list(probes), compared=compared, threshold=threshold)
