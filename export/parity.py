"""Parity of an exported tower with the sentence-transformers reference it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export import tensors

FP32_MIN_COSINE = 0.9999


class ParityError(RuntimeError):
    """The exported graph disagrees with the PyTorch reference beyond the threshold."""


@dataclass(frozen=True)
class ParityReport:
    probes: int
    min_cosine: float
    mean_cosine: float
    threshold: float
    worst_probe: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def check_parity(
    model, onnx_path: Path, probes: tuple[str, ...], *, threshold: float = FP32_MIN_COSINE
) -> ParityReport:
    """Embed `probes` with the sentence-transformers `model` and with the ONNX graph; compare."""
    reference = model.encode(list(probes), convert_to_numpy=True, normalize_embeddings=True)
    features = model.preprocess(list(probes))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {}
    for graph_input in session.get_inputs():
        source = (
            tensors.ATTENTION_MASK if graph_input.name == tensors.POOLING_MASK else graph_input.name
        )
        feeds[graph_input.name] = features[source].numpy().astype(np.int64)
    (exported,) = session.run([tensors.SENTENCE_EMBEDDING], feeds)
    cosines = cosine_rows(reference, exported)
    worst = int(np.argmin(cosines))
    report = ParityReport(
        probes=len(probes),
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        threshold=threshold,
        worst_probe=probes[worst],
    )
    if report.min_cosine < threshold:
        raise ParityError(
            f"min cosine {report.min_cosine:.6f} < {threshold} on probe {probes[worst]!r}"
        )
    return report
