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
    compared: str  # "sentence_embedding" or "token_embeddings"
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


def _run_graph(model, onnx_path: Path, probes: list[str]) -> np.ndarray:
    features = model.preprocess(probes)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {}
    for graph_input in session.get_inputs():
        # The reference pools with the attention mask when no prompt is given.
        name = graph_input.name
        source = tensors.ATTENTION_MASK if name == tensors.POOLING_MASK else name
        feeds[name] = features[source].numpy().astype(np.int64)
    (output,) = session.run(None, feeds)
    return output


def check_parity(
    model,
    onnx_path: Path,
    probes: tuple[str, ...],
    *,
    pooled: bool = True,
    threshold: float = FP32_MIN_COSINE,
) -> ParityReport:
    """Compare the ONNX graph with the sentence-transformers `model` on `probes`.

    A pooling graph is compared sentence by sentence; a token-level graph token by token (the
    worst token of a probe is that probe's score).
    """
    exported = _run_graph(model, onnx_path, list(probes))
    if pooled:
        reference = model.encode(list(probes), convert_to_numpy=True)
        cosines = cosine_rows(reference, exported)
    else:
        tokens = model.encode(list(probes), output_value="token_embeddings")
        cosines = np.array(
            [
                cosine_rows(ref.numpy(), exported[i, : len(ref)]).min()
                for i, ref in enumerate(tokens)
            ]
        )
    worst = int(np.argmin(cosines))
    report = ParityReport(
        probes=len(probes),
        compared=tensors.SENTENCE_EMBEDDING if pooled else tensors.TOKEN_EMBEDDINGS,
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        threshold=threshold,
        worst_probe=probes[worst],
    )
    if report.min_cosine < threshold:
        raise ParityError(
            f"{report.compared}: min cosine {report.min_cosine:.6f} < {threshold} "
            f"on probe {probes[worst]!r}"
        )
    return report
