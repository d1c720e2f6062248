"""Requests straight to Triton's text ensemble: work the gateway's admission does not see."""

from __future__ import annotations

import tritonclient.grpc as grpcclient

from bench.hops import ensemble_inputs
from model_repository import wire


def infer_texts(grpc_url: str, texts: list[str], *, priority: int = 0) -> None:
    """One request of `texts` to the text ensemble, at `priority` (0: the towers' default)."""
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        client.infer(
            wire.ENSEMBLE_TEXT, ensemble_inputs(texts), client_timeout=120, priority=priority
        )
    finally:
        client.close()
