"""Batch work beside realtime traffic (issue 15): realtime latency with and without a batch
running, and the batch's own throughput against 64-text realtime requests.

On one stack:
- steady realtime traffic: single-text requests, STEADY_IN_FLIGHT at a time, in ROUNDS windows of
  WINDOW_S (after SETTLE_S) without a batch, each followed by one beside a batch of BATCH_LINES
  lines (created before the window and cancelled after it). Windows alternate so that load from
  outside the stack, which comes and goes, falls on both sides alike; the CPU that other
  processes used meanwhile is reported with them;
- a lone client: SPORADIC_REQUESTS single-text requests SPORADIC_GAP_S apart, without and beside
  a batch, which between them has the model to itself;
- the same batch alone (sent REALTIME_QUIET_S after the last realtime request), texts per
  second from its creation to its completion, against 64-text realtime requests at the
  concurrency that saturates the stack (the best of BASELINE_IN_FLIGHT).

A line is an embeddings body of 1-4 texts of the benchmark corpus (10-80 words), floats, as an
OpenAI batch line is written by hand.

`python -m bench.batch` runs it alone on a fresh stack and replaces its own section of
docs/benchmarks.md; `make bench` runs it on its stack and writes the section the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from bench.corpus import sentences
from bench.load import Result, Target, client, in_flight
from bench.processes import TICKS_PER_S, cpu_seconds
from bench.report import write_section
from gateway.settings import Settings
from runner.paths import ROOT
from runner.processes import process_tree
from runner.stack import running_stack

COMMAND = "PYTHONPATH=. .venv/bin/python -m bench.batch"
MODEL = "epithre-embed"
HEADING = "## Batch work beside realtime traffic (issue 15)"
STEADY_IN_FLIGHT = 8
ROUNDS, WINDOW_S = 3, 10.0
# The first seconds of traffic are not counted: traffic that starts meets the batch work already
# in the towers (up to EPITHRE_BATCH_MAX_IN_FLIGHT lines), a cost the lone client's requests
# show; the windows measure traffic that goes on.
SETTLE_S = 2.0
SPORADIC_REQUESTS, SPORADIC_GAP_S = 10, 2.0
BATCH_LINES = 2_000
TEXTS_PER_LINE = (1, 4)
BASELINE_IN_FLIGHT = (2, 4)
# Seconds between polls of a batch: small against a batch's minute, light on the gateway.
POLL_S = 0.25
# The towers are idle once they computed nothing for this long.
IDLE_S = 1.0
# Lines a batch has checkpointed before a window beside it opens: its worker is past validation
# and its first chunk, at the pace it keeps while alone.
STEADY_LINES = 100
ENDED = ("completed", "failed", "expired", "cancelled")
# How long after the last realtime request the worker keeps to its pace beside traffic (the
# `make serve` default of EPITHRE_BATCH_REALTIME_QUIET_S).
REALTIME_QUIET_S = Settings.batch_realtime_quiet_s
P95_TARGET, P95_GOAL, THROUGHPUT_TARGET = 1.5, 1.3, 0.8


@dataclass(frozen=True)
class BatchRun:
    lines: int
    texts: int
    seconds: float  # from POST /v1/batches to the batch seen completed

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.seconds


@dataclass(frozen=True)
class BatchBench:
    alone: Result  # steady realtime traffic, no batch
    beside: Result  # steady realtime traffic beside a batch
    others_cores: tuple[float, float]  # cores other processes used: windows alone, beside
    beside_batch_texts: int  # texts the tower computed for the batch meanwhile
    sporadic_alone: Result
    sporadic_beside: Result
    batch: BatchRun  # a batch alone
    baseline: dict[int, Result]  # 64-text realtime requests, by requests in flight

    @property
    def p95_ratio(self) -> float:
        return self.beside.percentile(95) / self.alone.percentile(95)

    @property
    def best_baseline(self) -> Result:
        return max(self.baseline.values(), key=lambda r: r.items_per_s)

    @property
    def throughput_ratio(self) -> float:
        return self.batch.texts_per_s / self.best_baseline.items_per_s


def batch_lines(texts: list[str], *, model: str, lines: int, seed: int = 0) -> list[bytes]:
    """`lines` batch input lines of TEXTS_PER_LINE corpus texts each, in corpus order."""
    rng = random.Random(seed)
    corpus = itertools.cycle(texts)
    return [
        orjson.dumps(
            {
                "custom_id": f"line-{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {
                    "model": model,
                    "input": list(itertools.islice(corpus, rng.randint(*TEXTS_PER_LINE))),
                },
            }
        )
        for i in range(lines)
    ]


def texts_in(lines: list[bytes]) -> int:
    return sum(len(orjson.loads(line)["body"]["input"]) for line in lines)


class OtherLoad:
    """CPU time the machine spent on processes other than the stack's and this one's."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self.seconds = 0.0  # wall time measured
        self.cpu_s = 0.0

    def _now(self) -> float:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
        user, nice, system, _idle, _iowait, irq, softirq = map(int, fields)
        busy = (user + nice + system + irq + softirq) / TICKS_PER_S
        return busy - self._target.cpu_seconds() - time.process_time()

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        started, cpu = time.perf_counter(), self._now()
        yield
        self.seconds += time.perf_counter() - started
        self.cpu_s += self._now() - cpu

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds


def pooled(name: str, results: list[Result]) -> Result:
    return Result(
        name,
        sum(r.items for r in results),
        sum(r.seconds for r in results),
        [ms for r in results for ms in r.latencies_ms],
        target=results[0].target,
    )


async def _post(http: aiohttp.ClientSession, target: Target, body: bytes) -> float:
    """One realtime request; its latency in milliseconds."""
    started = time.perf_counter()
    headers = {"Content-Type": "application/json"}
    async with http.post(target.path, data=body, headers=headers) as response:
        await response.read()
        response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def _singles(target: Target, texts: list[str]) -> itertools.cycle[bytes]:
    return itertools.cycle([orjson.dumps({"model": target.model, "input": [t]}) for t in texts])


async def steady(
    http: aiohttp.ClientSession, target: Target, texts: list[str], *, name: str
) -> Result:
    """Single-text requests, STEADY_IN_FLIGHT at a time, for SETTLE_S and then WINDOW_S; the
    requests sent in the window count."""
    latencies: list[float] = []
    bodies = _singles(target, texts)
    opens = time.perf_counter() + SETTLE_S
    closes = opens + WINDOW_S

    async def sender() -> None:
        while (sent := time.perf_counter()) < closes:
            latency = await _post(http, target, next(bodies))
            if sent >= opens:
                latencies.append(latency)

    await asyncio.gather(*(sender() for _ in range(STEADY_IN_FLIGHT)))
    seconds = time.perf_counter() - opens
    return Result(name, len(latencies), seconds, latencies, target=target.name)


async def sporadic(
    http: aiohttp.ClientSession, target: Target, texts: list[str], *, name: str
) -> Result:
    """SPORADIC_REQUESTS single-text requests, one every SPORADIC_GAP_S."""
    bodies = _singles(target, texts)
    latencies = []
    started = time.perf_counter()
    for _ in range(SPORADIC_REQUESTS):
        latencies.append(await _post(http, target, next(bodies)))
        await asyncio.sleep(SPORADIC_GAP_S)
    seconds = time.perf_counter() - started
    return Result(name, len(latencies), seconds, latencies, target=target.name)


async def _json(response: aiohttp.ClientResponse) -> dict:
    body = await response.read()
    if response.status != 200:
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {body[:200]!r}")
    return orjson.loads(body)


async def create_batch(http: aiohttp.ClientSession, lines: list[bytes]) -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", b"\n".join(lines) + b"\n", filename="input.jsonl")
    async with http.post("/v1/files", data=form) as response:
        file = await _json(response)
    create = {"input_file_id": file["id"], "endpoint": "/v1/embeddings", "completion_window": "24h"}
    async with http.post("/v1/batches", json=create) as response:
        return (await _json(response))["id"]


async def get_batch(http: aiohttp.ClientSession, batch_id: str) -> dict:
    async with http.get(f"/v1/batches/{batch_id}") as response:
        return await _json(response)


async def until_done(http: aiohttp.ClientSession, batch_id: str, lines: int) -> dict:
    """The batch once `lines` of its lines are checkpointed, or once it ended."""
    while True:
        batch = await get_batch(http, batch_id)
        counts = batch["request_counts"]
        if batch["status"] in ENDED or counts["completed"] + counts["failed"] >= lines:
            return batch
        await asyncio.sleep(POLL_S)


async def towers_idle(tower_texts: Callable[[], int]) -> None:
    """Once the text tower computed nothing for IDLE_S."""
    seen = tower_texts()
    while True:
        await asyncio.sleep(IDLE_S)
        if (now := tower_texts()) == seen:
            return
        seen = now


@contextlib.asynccontextmanager
async def running_batch(
    http: aiohttp.ClientSession, lines: list[bytes], tower_texts: Callable[[], int]
) -> AsyncIterator[None]:
    """A batch of `lines` running at its own pace; at the end cancelled, and gone from the
    towers: a cancelled batch's lines in flight run on until its worker's next lease renewal."""
    batch_id = await create_batch(http, lines)
    await until_done(http, batch_id, STEADY_LINES)
    yield
    batch = await get_batch(http, batch_id)
    if batch["status"] != "in_progress":
        raise RuntimeError(f"the batch was {batch['status']} before the window ended")
    async with http.post(f"/v1/batches/{batch_id}/cancel") as response:
        await _json(response)
    await until_done(http, batch_id, len(lines) + 1)
    await towers_idle(tower_texts)


async def batch_alone(http: aiohttp.ClientSession, lines: list[bytes]) -> BatchRun:
    started = time.perf_counter()
    batch_id = await create_batch(http, lines)
    ended = await until_done(http, batch_id, len(lines) + 1)
    seconds = time.perf_counter() - started
    if ended["status"] != "completed" or ended["request_counts"]["failed"]:
        raise RuntimeError(f"the batch ended {ended['status']}: {ended['request_counts']}")
    return BatchRun(lines=len(lines), texts=texts_in(lines), seconds=seconds)


async def baseline(http: aiohttp.ClientSession, target: Target, texts: list[str], n: int) -> Result:
    requests = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    seconds, latencies = await in_flight(http, target, requests, n)
    name = f"64-text requests, {n} in flight"
    return Result(name, sum(map(len, requests)), seconds, latencies, target=target.name)


async def measure(target: Target, texts: list[str]) -> BatchBench:
    """Every pattern of this module against the stack at `target`, in the order listed above."""
    lines = batch_lines(texts, model=target.model, lines=BATCH_LINES)

    counts = target.tower_counts
    if counts is None:
        raise ValueError("the batch benchmark reads the text tower's counts: give tower_counts")

    def tower_texts() -> int:
        return counts()[0]

    alone, beside, batch_texts = [], [], 0
    others_alone, others_beside = OtherLoad(target), OtherLoad(target)
    async with client(target) as http:
        await in_flight(http, target, [[t] for t in texts[:64]], STEADY_IN_FLIGHT)  # warm-up
        for _ in range(ROUNDS):
            with others_alone.during():
                alone.append(await steady(http, target, texts, name="no batch"))
            async with running_batch(http, lines, tower_texts):
                before = tower_texts()
                with others_beside.during():
                    beside.append(await steady(http, target, texts, name="beside a batch"))
                batch_texts += tower_texts() - before - beside[-1].items
        steady_alone, steady_beside = pooled("no batch", alone), pooled("beside a batch", beside)
        print(
            f"steady: p95 {steady_alone.percentile(95):.0f} ms alone, "
            f"{steady_beside.percentile(95):.0f} ms beside a batch",
            flush=True,
        )
        sporadic_alone = await sporadic(http, target, texts, name="no batch")
        async with running_batch(http, lines, tower_texts):
            sporadic_beside = await sporadic(http, target, texts, name="beside a batch")
        # Alone: once the gateway counts no realtime request as recent, so that the batch starts
        # at the pace it keeps with the model to itself rather than the one beside traffic.
        await asyncio.sleep(REALTIME_QUIET_S)
        batch = await batch_alone(http, lines)
        print(f"batch alone: {batch.texts_per_s:.1f} texts/s", flush=True)
        base = {n: await baseline(http, target, texts, n) for n in BASELINE_IN_FLIGHT}
    return BatchBench(
        alone=steady_alone,
        beside=steady_beside,
        others_cores=(others_alone.cores, others_beside.cores),
        beside_batch_texts=batch_texts,
        sporadic_alone=sporadic_alone,
        sporadic_beside=sporadic_beside,
        batch=batch,
        baseline=base,
    )


def section(bench: BatchBench, *, command: str, cores: int) -> str:
    low, high = TEXTS_PER_LINE
    best = bench.best_baseline
    p95_met = "yes" if bench.p95_ratio <= P95_TARGET else "NO"
    throughput_met = "yes" if bench.throughput_ratio >= THROUGHPUT_TARGET else "NO"

    def latency_row(kind: str, r: Result) -> str:
        return (
            f"| {kind}, {r.name} | {r.items:,} | {r.items_per_s:.1f} | {r.percentile(50):.0f} "
            f"| {r.percentile(95):.0f} | {max(r.latencies_ms):.0f} |"
        )

    steady_kind = f"{STEADY_IN_FLIGHT} in flight"
    sporadic_kind = f"one every {SPORADIC_GAP_S:.0f} s"
    return "\n".join(
        [
            HEADING,
            "",
            f"Command: `{command}`, one stack on {cores} cores (`bench/batch.py` describes each "
            f"pattern). Realtime: single-text requests of the benchmark corpus, "
            f"{STEADY_IN_FLIGHT} in flight, in {ROUNDS} windows of {WINDOW_S:.0f} s without a "
            f"batch, each followed by one beside a batch; each window counts the requests sent "
            f"after the traffic's first {SETTLE_S:.0f} s, when it meets the batch work already in "
            f"the towers (the lone client's requests show that cost). Then {SPORADIC_REQUESTS} "
            f"requests {SPORADIC_GAP_S:.0f} s apart, without and beside a batch. A batch: "
            f"{bench.batch.lines:,} lines of {low}-{high} corpus texts each "
            f"({bench.batch.texts:,} texts, floats), cancelled after the windows beside it; "
            f"then the same batch alone, from POST /v1/batches to completed, sent "
            f"{REALTIME_QUIET_S:.0f} s after the last realtime request (until then the worker "
            "keeps to its pace beside traffic, EPITHRE_BATCH_REALTIME_QUIET_S).",
            "",
            "| criterion | target | measured | met |",
            "|---|---|---|---|",
            f"| realtime p95 beside a batch / without, {steady_kind} "
            f"| <= {P95_TARGET} (goal {P95_GOAL}) | {bench.p95_ratio:.2f} | {p95_met} |",
            f"| batch alone / 64-text requests, texts/s | >= {THROUGHPUT_TARGET} "
            f"| {bench.throughput_ratio:.2f} | {throughput_met} |",
            "",
            "| realtime single-text requests | requests | per s | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|---|---|",
            latency_row(steady_kind, bench.alone),
            latency_row(steady_kind, bench.beside),
            latency_row(sporadic_kind, bench.sporadic_alone),
            latency_row(sporadic_kind, bench.sporadic_beside),
            "",
            "| throughput | texts/s |",
            "|---|---|",
            f"| batch alone, creation to completion ({bench.batch.seconds:.0f} s) "
            f"| {bench.batch.texts_per_s:.1f} |",
            *(
                f"| {r.name}{' (best)' if r is best else ''} | {r.items_per_s:.1f} |"
                for r in bench.baseline.values()
            ),
            "",
        ]
    ) + _context(bench)


def _context(bench: BatchBench) -> str:
    alone, beside = bench.others_cores
    others = (
        f"\nOther processes on the machine used {alone:.2f} cores on average during the windows "
        f"without a batch and {beside:.2f} beside one."
    )
    per_s = bench.beside_batch_texts / bench.beside.seconds
    return (
        f"{others} The batch's texts the tower computed during the windows beside it: "
        f"{bench.beside_batch_texts:,} ({per_s:.1f} texts/s).\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    # Imported here: bench.__main__ imports this module for `make bench`.
    from bench.__main__ import encoder_counts

    texts = sentences(1024)
    with tempfile.TemporaryDirectory() as workdir:
        data = Path(workdir) / "data"
        with running_stack(Path(workdir), EPITHRE_DATA_DIR=str(data)) as stack:
            servers = [stack.gateway.pid, *process_tree(stack.triton.process.pid)]
            target = Target(
                "ours",
                stack.base_url,
                "/v1/embeddings",
                MODEL,
                cpu_seconds=lambda: cpu_seconds(servers),
                tower_counts=lambda: encoder_counts(stack.triton.grpc_url),
            )
            bench = asyncio.run(measure(target, texts))
    text = section(bench, command=COMMAND, cores=len(os.sched_getaffinity(0)))
    write_section(args.output, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
