"""The overload pattern: far more 64-text requests in flight than the server finishes in time.

Clients honour `Retry-After`, as the OpenAI SDK does: the wait from a first refusal to the retry
answered 200 is compared with the `Retry-After` that refusal announced. Goodput is the texts
answered 200 per second during the overload.

`python -m bench.overload` runs it alone on a fresh stack with the `make serve` settings and
prints the section.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.corpus import sentences
from bench.load import Target, client, in_flight
from runner.stack import running_stack

CLIENTS = 48
SECONDS = 60.0
COMMAND = "PYTHONPATH=. .venv/bin/python -m bench.overload"


@dataclass
class Overload:
    seconds: float
    texts_ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # Retry-After announced minus the wait after which a retry was answered 200, per refusal.
    retry_errors_s: list[float] = field(default_factory=list)

    @property
    def goodput(self) -> float:
        return self.texts_ok / self.seconds

    @property
    def median_retry_error_s(self) -> float:
        errors = [abs(e) for e in self.retry_errors_s]
        return statistics.median(errors) if errors else float("nan")


async def _client(
    http: aiohttp.ClientSession, target: Target, texts: list[str], until: float, tally: Overload
) -> None:
    body = orjson.dumps({"model": target.model, "input": texts})
    headers = {"Content-Type": "application/json"}
    refused_at, announced = None, 0
    while time.monotonic() < until:
        async with http.post(target.path, data=body, headers=headers) as response:
            await response.read()
            tally.statuses[response.status] += 1
            if response.status == 200:
                tally.texts_ok += len(texts)
                if refused_at is not None:
                    tally.retry_errors_s.append(announced - (time.monotonic() - refused_at))
                refused_at = None
                continue
            retry_after = int(response.headers.get("Retry-After", "1"))
            if refused_at is None:
                refused_at, announced = time.monotonic(), retry_after
        await asyncio.sleep(retry_after)


async def overload(target: Target, texts: list[str], *, clients: int = CLIENTS) -> Overload:
    """`clients` loops of 64-text requests for SECONDS."""
    batches = [texts[(64 * i) % len(texts) :][:64] for i in range(clients)]
    tally = Overload(seconds=SECONDS)
    async with client(target) as http:
        until = time.monotonic() + SECONDS
        await asyncio.gather(*(_client(http, target, b, until, tally) for b in batches))
    return tally


async def unloaded(target: Target, texts: list[str]) -> float:
    """Texts per second of 64-text requests one after another: the throughput without overload."""
    batches = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    async with client(target) as http:
        await in_flight(http, target, batches[:2], 1)  # warm-up
        seconds, _ = await in_flight(http, target, batches, 1)
    return sum(len(b) for b in batches) / seconds


def section(result: Overload, baseline: float, *, command: str) -> str:
    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(result.statuses.items()))
    return "\n".join(
        [
            "## Overload (issue 10)",
            "",
            f"{CLIENTS} clients sending 64-text requests for {SECONDS:.0f} s, each retrying "
            f"after the `Retry-After` it was told. Command: `{command}`.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| throughput without overload (64-text requests, sequential) | {baseline:.1f} "
            "texts/s |",
            f"| goodput during overload (texts answered 200) | {result.goodput:.1f} texts/s |",
            f"| goodput / throughput without overload | {result.goodput / baseline:.2f} |",
            f"| answers | {statuses} |",
            "| median error of Retry-After against the wait after which a retry succeeded | "
            f"{result.median_retry_error_s:.2f} s over {len(result.retry_errors_s)} refusals |",
            "",
        ]
    )


def main() -> None:
    texts = sentences(1024)
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_stack(Path(workdir)) as stack,
    ):
        target = Target("ours", stack.base_url, "/v1/embeddings", "epithre-embed", lambda: 0.0)
        baseline = asyncio.run(unloaded(target, texts))
        result = asyncio.run(overload(target, texts))
    print(section(result, baseline, command=COMMAND))


if __name__ == "__main__":
    main()
