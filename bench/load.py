"""Load patterns against the gateway: batched, concurrent singles, the contract's burst."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np

MODEL = "epithre-embed"


@dataclass(frozen=True)
class Result:
    name: str
    items: int
    seconds: float
    latencies_ms: list[float]

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


async def _post(client: httpx.AsyncClient, items: list, latencies: list[float]) -> None:
    started = time.perf_counter()
    response = await client.post("/v1/embeddings", json={"model": MODEL, "input": items})
    response.raise_for_status()
    latencies.append((time.perf_counter() - started) * 1000)


async def in_flight(client: httpx.AsyncClient, requests: list[list], concurrency: int) -> tuple:
    latencies: list[float] = []
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            await _post(client, queue.pop(), latencies)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def run_patterns(base_url: str, texts: list[str], burst: list[str]) -> list[Result]:
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        await in_flight(client, [texts[:64]], 1)  # warm-up
        results = []
        batches = [texts[i : i + 64] for i in range(0, len(texts), 64)]
        seconds, latencies = await in_flight(client, batches, 1)
        results.append(Result("64-text requests, sequential", len(texts), seconds, latencies))
        for concurrency in (1, 8, 64):
            seconds, latencies = await in_flight(client, [[t] for t in texts], concurrency)
            name = f"single-text requests, {concurrency} in flight"
            results.append(Result(name, len(texts), seconds, latencies))
        for name, requests, concurrency in (
            ("burst of 10: sequential singles", [[t] for t in burst], 1),
            ("burst of 10: one batched request", [burst], 1),
            ("burst of 10: asyncio.gather of singles", [[t] for t in burst], len(burst)),
        ):
            rounds = [await in_flight(client, requests, concurrency) for _ in range(20)]
            mean_s = float(np.mean([s for s, _ in rounds]))
            results.append(Result(name, len(burst), mean_s, [s * 1000 for s, _ in rounds]))
    return results
