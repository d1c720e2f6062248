"""Requests straight to Triton's text ensemble: work the gateway's admission does not see."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient

from model_repository import wire


def infer_texts(grpc_url: str, texts: list[str], *, priority: int = 0) -> None:
    """One request of `texts` to the text ensemble, at `priority` (0: the towers' default)."""
    client = grpcclient.InferenceServerClient(grpc_url)
    n = len(texts)
    inputs = []
    for tensor, values in (
        (wire.TEXT, [t.encode() for t in texts]),
        (wire.INSTRUCTION, [b""] * n),
        (wire.TRUNCATE, [wire.TRUNCATE_END.encode()] * n),
    ):
        infer_input = grpcclient.InferInput(tensor.name, [n, 1], tensor.dtype)
        infer_input.set_data_from_numpy(np.array(values, dtype=np.object_).reshape(n, 1))
        inputs.append(infer_input)
    dimensions = grpcclient.InferInput(wire.DIMENSIONS.name, [n, 1], wire.DIMENSIONS.dtype)
    dimensions.set_data_from_numpy(np.zeros((n, 1), dtype=np.int32))
    try:
        client.infer(
            wire.ENSEMBLE_TEXT, [*inputs, dimensions], client_timeout=120, priority=priority
        )
    finally:
        client.close()
