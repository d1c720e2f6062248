"""Load patterns against an OpenAI-shaped embeddings server: ours or a peer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

CONCURRENCY = (1, 8, 64)
BURST_ROUNDS = 20


@dataclass(frozen=True)
class Target:
    """Where a server answers embeddings requests, and what it costs while it does."""

    name: str
    base_url: str
    path: str
    model: str
    # Server CPU-seconds so far, and (requests, executions) of the tower if the server tells.
    cpu_seconds: Callable[[], float]
    tower_counts: Callable[[], tuple[int, int]] | None = None


@dataclass
class Result:
    name: str
    items: int
    seconds: float
    latencies_ms: list[float]
    target: str = ""
    cpu_seconds: float = 0.0
    merged: float | None = None  # requests per tower execution

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    @property
    def cpu_ms_per_item(self) -> float:
        return self.cpu_seconds * 1000 / self.items

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def client(target: Target) -> aiohttp.ClientSession:
    # aiohttp rather than httpx: httpx spent about 11 CPU ms per request here, a third of what
    # the server spends on a text, and the load generator shares the cores with the server.
    connector = aiohttp.TCPConnector(limit=128)
    timeout = aiohttp.ClientTimeout(total=300)
    return aiohttp.ClientSession(target.base_url, connector=connector, timeout=timeout)


async def in_flight(
    http: aiohttp.ClientSession, target: Target, requests: list[list], concurrency: int
) -> tuple[float, list[float]]:
    """Send every request with `concurrency` in flight; wall seconds and latencies (ms)."""
    latencies: list[float] = []
    bodies = [orjson.dumps({"model": target.model, "input": items}) for items in requests]
    queue = list(reversed(bodies))
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            async with http.post(target.path, data=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def measure(
    http: aiohttp.ClientSession, target: Target, name: str, requests: list[list], concurrency: int
) -> Result:
    cpu_before = target.cpu_seconds()
    counts_before = target.tower_counts() if target.tower_counts else None
    seconds, latencies = await in_flight(http, target, requests, concurrency)
    result = Result(
        name,
        sum(len(r) for r in requests),
        seconds,
        latencies,
        target=target.name,
        cpu_seconds=target.cpu_seconds() - cpu_before,
    )
    if counts_before is not None:
        after = target.tower_counts()
        executions = after[1] - counts_before[1]
        result.merged = (after[0] - counts_before[0]) / executions if executions else None
    return result


async def text_patterns(target: Target, texts: list[str]) -> list[Result]:
    """64-text requests one after another, then single-text requests at each concurrency."""
    async with client(target) as http:
        await in_flight(http, target, [texts[:64]], 1)  # warm-up
        batches = [texts[i : i + 64] for i in range(0, len(texts), 64)]
        results = [await measure(http, target, "64-text requests, sequential", batches, 1)]
        for concurrency in CONCURRENCY:
            name = f"single-text requests, {concurrency} in flight"
            singles = [[t] for t in texts]
            results.append(await measure(http, target, name, singles, concurrency))
    return results


async def burst_patterns(target: Target, burst: list[str]) -> list[Result]:
    """The contract's burst: sequential singles, one batched request, asyncio.gather."""
    results = []
    async with client(target) as http:
        for name, requests, concurrency in (
            ("burst of 10: sequential singles", [[t] for t in burst], 1),
            ("burst of 10: one batched request", [burst], 1),
            ("burst of 10: asyncio.gather of singles", [[t] for t in burst], len(burst)),
        ):
            rounds = [
                await in_flight(http, target, requests, concurrency) for _ in range(BURST_ROUNDS)
            ]
            mean_s = float(np.mean([s for s, _ in rounds]))
            results.append(
                Result(name, len(burst), mean_s, [s * 1000 for s, _ in rounds], target=target.name)
            )
    return results


async def sustained(target: Target, texts: list[str], *, requests: int, concurrency: int) -> None:
    """Many single-text requests, for watching memory rather than speed."""
    async with client(target) as http:
        singles = [[texts[i % len(texts)]] for i in range(requests)]
        await in_flight(http, target, singles, concurrency)
