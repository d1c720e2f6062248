"""Overload and failure answered at the edge, against a real tritonserver with a 5 s deadline.

One stack for the module: far more 64-text requests in flight than it can finish in time, a light
key beside them, a client that leaves while its request is queued, and a stopped tritonserver.
Triton 24.10 does not pass a cancelled call on to an ensemble's queued steps: what keeps a gone
client's work from running is the queue timeout the gateway sends with every call.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from model_repository import wire
from runner.stack import Stack, running_stack
from tests.integration.conftest import cosine, short_texts
from tests.integration.direct import infer_texts

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"
HEAVY, LIGHT = "heavy-key", "light-key"
DEADLINE_S = 5
OVERLOAD_S = 15
HEAVY_CLIENTS = 48
TEXTS = short_texts(64)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("overload"),
        EPITHRE_REQUEST_TIMEOUT_S=str(DEADLINE_S),
        EPITHRE_API_KEYS=f"{HEAVY},{LIGHT}",
    ) as running:
        yield running


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def alone(stack: Stack) -> dict[str, np.ndarray]:
    """Each text's vector embedded alone, before any overload."""
    vectors = {}
    with httpx.Client(base_url=stack.base_url, headers=headers(LIGHT), timeout=30) as client:
        for text in TEXTS:
            response = client.post("/v1/embeddings", json={"model": MODEL, "input": text})
            vectors[text] = np.array(response.json()["data"][0]["embedding"])
    return vectors


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.bad_retry_after: list[str | None] = []
        self.wrong_vectors = 0
        self.last_answer_at = 0.0

    def record(self, response: httpx.Response, texts: list[str], alone: dict) -> None:
        self.statuses[response.status_code] += 1
        self.last_answer_at = time.monotonic()
        if response.status_code == 200:
            data = response.json()["data"]
            self.wrong_vectors += sum(
                cosine(item["embedding"], alone[text]) < 0.99999
                for item, text in zip(data, texts, strict=True)
            )
        else:
            retry_after = response.headers.get("retry-after")
            if not (retry_after or "").isdigit() or not 1 <= int(retry_after) <= 120:
                self.bad_retry_after.append(retry_after)


async def _client_loop(
    client: httpx.AsyncClient, key: str, size: int, until: float, tally: Tally, alone: dict
) -> None:
    rng = random.Random(f"{key}{id(tally)}{size}")
    while time.monotonic() < until:
        texts = rng.sample(TEXTS, size)
        response = await client.post(
            "/v1/embeddings", json={"model": MODEL, "input": texts}, headers=headers(key)
        )
        tally.record(response, texts, alone)
        if response.status_code != 200:
            await asyncio.sleep(0.1)  # keep the pressure on, without a busy loop


async def _readiness_loop(client: httpx.AsyncClient, until: float, statuses: list[int]) -> None:
    while time.monotonic() < until:
        statuses.append((await client.get("/health/ready")).status_code)
        await asyncio.sleep(0.5)


async def _overload(base_url: str, alone: dict) -> tuple[Tally, Tally, list[int], float]:
    heavy, light, ready = Tally(), Tally(), []
    limits = httpx.Limits(max_connections=HEAVY_CLIENTS + 8)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        until = time.monotonic() + OVERLOAD_S
        await asyncio.gather(
            *(_client_loop(client, HEAVY, 64, until, heavy, alone) for _ in range(HEAVY_CLIENTS)),
            _client_loop(client, LIGHT, 1, until, light, alone),
            _readiness_loop(client, until, ready),
        )
        last = max(heavy.last_answer_at, light.last_answer_at)
        started = time.monotonic()
        after = await client.post(
            "/v1/embeddings", json={"model": MODEL, "input": TEXTS[0]}, headers=headers(LIGHT)
        )
        assert after.status_code == 200
        served_after_s = time.monotonic() - max(started, last)
    return heavy, light, ready, served_after_s


@pytest.fixture(scope="module")
def overload(stack: Stack, alone: dict) -> tuple[Tally, Tally, list[int], float]:
    return asyncio.run(_overload(stack.base_url, alone))


def test_overload_is_answered_429_with_retry_after_never_504(overload):
    heavy, light, _, _ = overload
    statuses = heavy.statuses + light.statuses
    print(f"\noverload statuses: heavy {dict(heavy.statuses)}, light {dict(light.statuses)}")
    assert set(statuses) <= {200, 429}, dict(statuses)
    assert statuses[429] > 0 and statuses[200] > 0, dict(statuses)
    assert heavy.bad_retry_after == [] and light.bad_retry_after == []


def test_every_answer_under_overload_carries_the_right_vectors(overload):
    heavy, light, _, _ = overload
    assert heavy.wrong_vectors == 0 and light.wrong_vectors == 0


def test_readiness_stays_200_under_overload(overload):
    _, _, ready, _ = overload
    assert ready and set(ready) == {200}, ready


def test_a_light_key_beside_the_overload_gets_at_least_80_percent_answered(overload):
    _, light, _, _ = overload
    total = sum(light.statuses.values())
    assert total >= 5
    assert light.statuses[200] / total >= 0.8, dict(light.statuses)


def test_a_request_after_the_overload_is_served_within_3_s(overload):
    _, _, _, served_after_s = overload
    assert served_after_s <= 3.0


def _tower_counts(grpc_url: str) -> tuple[int, int]:
    """Rows the text tower ran, and its failed requests (a queue timeout counts as one)."""
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        stats = client.get_inference_statistics(wire.TEXT_ENCODER, as_json=True)
    finally:
        client.close()
    (model,) = stats["model_stats"]
    failed = model["inference_stats"].get("fail", {}).get("count", 0)
    return int(model.get("inference_count", 0)), int(failed)


def test_a_request_whose_client_left_while_queued_is_not_executed(stack, overload):
    # Both tower instances busy for longer than the queue timeout (0.8 x 5 s) with work sent
    # past the gateway; then a 7-text request through it whose client gives up after 1 s.
    long = ["kata " * 300] * 64
    before_rows, before_failed = _tower_counts(stack.triton.grpc_url)
    with ThreadPoolExecutor(2) as pool:
        loads = [pool.submit(infer_texts, stack.triton.grpc_url, long) for _ in range(2)]
        time.sleep(0.5)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{stack.base_url}/v1/embeddings",
                json={"model": MODEL, "input": TEXTS[:7]},
                headers=headers(LIGHT),
                timeout=1.0,
            )
        for load in loads:
            load.result()
    rows, failed = _tower_counts(stack.triton.grpc_url)
    assert rows - before_rows == 2 * 64  # only the loads ran: none of the 7 rows
    assert failed - before_failed >= 1  # the queued parts were dropped at their queue timeout


def _stop(stack: Stack) -> int:
    assert stack.triton.process is not None
    pid = stack.triton.process.pid
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_a_stopped_triton_is_answered_503_with_retry_after_within_5_s_and_recovers(stack, overload):
    client = httpx.Client(base_url=stack.base_url, headers=headers(LIGHT), timeout=30)
    body = {"model": MODEL, "input": "kucing"}
    pid = _stop(stack)
    try:
        stopped_at = time.monotonic()
        while client.get("/health/ready").status_code != 503:
            assert time.monotonic() - stopped_at < 5.0, "readiness still 200 5 s after SIGSTOP"
            time.sleep(0.2)
        started = time.monotonic()
        refused = client.post("/v1/embeddings", json=body)
        assert (refused.status_code, refused.headers["retry-after"].isdigit()) == (503, True)
        assert time.monotonic() - started < 1.0
        assert time.monotonic() - stopped_at < 5.0
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    while client.post("/v1/embeddings", json=body).status_code != 200:
        assert time.monotonic() - resumed_at < 30.0, "not serving 30 s after SIGCONT"
        time.sleep(0.5)
    assert client.get("/health/ready").status_code == 200
