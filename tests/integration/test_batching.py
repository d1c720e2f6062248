"""Triton's dynamic batcher merges concurrent requests at the encoder itself."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from counting import FLUSH_INTERVAL_S
from prometheus_client.parser import text_string_to_metric_families

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


def _text(i: int, words: int) -> str:
    return " ".join(WORDS[(i + j) % len(WORDS)] for j in range(words))


def test_64_concurrent_single_text_requests_run_as_at_most_16_encoder_executions(stack):
    # 3 to 66 words: token lengths spread over several padding buckets, which merge all the same.
    texts = [_text(i, 3 + i) for i in range(64)]
    inferences_before, executions_before = encoder_counts(stack.triton.grpc_url)
    statuses = asyncio.run(_single_text_requests(stack.base_url, texts))
    inferences_after, executions_after = encoder_counts(stack.triton.grpc_url)
    assert statuses == [200] * 64
    assert inferences_after - inferences_before == 64
    assert executions_after - executions_before <= 16


def token_positions(metrics_url: str) -> dict[tuple[str, str], float]:
    """(family, kind) -> count, for the encoder's and the preprocessor's token counters."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
    return {
        (family.name, sample.labels["kind"]): sample.value
        for family in families
        if family.name.endswith("_token_positions")
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels.get("model", "text_encoder") == "text_encoder"
    }


def settled_token_positions(metrics_url: str, *, deadline_s: float = 30) -> dict:
    """The counters once the stubs have sent every count: they send at most every
    FLUSH_INTERVAL_S, so two reads that far apart and more agree."""
    deadline = time.monotonic() + deadline_s
    last = token_positions(metrics_url)
    while time.monotonic() < deadline:
        time.sleep(2 * FLUSH_INTERVAL_S)
        now = token_positions(metrics_url)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the token counters kept changing for {deadline_s} s")


def _ensemble_tokens(grpc_url: str, texts: list[str]) -> list[int]:
    """One Triton request for all `texts` (the gateway would split them), tokens per text."""
    inputs = []
    for name, values in (
        ("TEXT", texts),
        ("INSTRUCTION", [""] * len(texts)),
        ("TRUNCATE", ["END"] * len(texts)),
    ):
        tensor = grpcclient.InferInput(name, [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[v.encode()] for v in values], dtype=np.object_))
        inputs.append(tensor)
    dims = grpcclient.InferInput("DIMENSIONS", [len(texts), 1], "INT32")
    dims.set_data_from_numpy(np.zeros((len(texts), 1), dtype=np.int32))
    result = grpcclient.InferenceServerClient(grpc_url).infer("embed_text", [*inputs, dims])
    return result.as_numpy("TOKENS").reshape(-1).tolist()


def test_token_metrics_count_real_tokens_and_the_padding_computed(stack):
    short, long = _text(0, 2), _text(1, 40)
    before = settled_token_positions(stack.triton.metrics_url)
    short_tokens, long_tokens = _ensemble_tokens(stack.triton.grpc_url, [short, long])
    after = settled_token_positions(stack.triton.metrics_url)
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    real = short_tokens + long_tokens
    # The tower runs both rows in one chunk cut to the longer one; the preprocessor hands on
    # both padded to the next multiple of 16 tokens.
    handed_on = 2 * (-(-long_tokens // 16) * 16)
    assert delta[("epithre_encoder_token_positions", "real")] == real
    assert delta[("epithre_encoder_token_positions", "padding")] == long_tokens - short_tokens
    assert delta[("epithre_preprocess_token_positions", "real")] == real
    assert delta[("epithre_preprocess_token_positions", "padding")] == handed_on - real
