"""Triton's dynamic batcher merges concurrent requests at the encoder itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import tritonclient.grpc as grpcclient

pytestmark = pytest.mark.integration

WORDS = [
    "hutan",
    "sungai",
    "gunung",
    "pantai",
    "kota",
    "desa",
    "sawah",
    "ladang",
    "pasar",
    "sekolah",
]


def encoder_counts(grpc_url: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(grpc_url)
    (stats,) = client.get_inference_statistics("text_encoder").model_stats
    return stats.inference_count, stats.execution_count


async def _single_text_requests(base_url: str, texts: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        responses = await asyncio.gather(
            *(
                client.post("/v1/embeddings", json={"model": "epithre-embed", "input": t})
                for t in texts
            )
        )
    return [r.status_code for r in responses]


def test_64_concurrent_single_text_requests_run_as_at_most_16_encoder_executions(stack):
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 8)) for i in range(64)]
    inferences_before, executions_before = encoder_counts(stack.triton.grpc_url)
    statuses = asyncio.run(_single_text_requests(stack.base_url, texts))
    inferences_after, executions_after = encoder_counts(stack.triton.grpc_url)
    assert statuses == [200] * 64
    assert inferences_after - inferences_before == 64
    assert executions_after - executions_before <= 16
