"""`make soak`: ten minutes of mixed traffic against `python -m runner`, as `make serve` runs it.

Texts, images, bad inputs, clients that leave mid-request, an overload burst at minute 4 and a
`kill -9` of tritonserver at minute 6 of ten (the supervisor restarts it). Reports the answers
by status, 5xx outside the kill window, goodput, and RSS and open file descriptors of the
gateway and of tritonserver with its stubs, sampled every 30 s; writes docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from PIL import Image

from bench.corpus import sentences
from bench.processes import rss_mib
from runner.processes import command_line, process_tree
from runner.stack import ROOT, runner_process

COMMAND = "make soak"
# The burst starts at 40% of the run and Triton is killed at 60%: minutes 4 and 6 of ten.
BURST_AT, BURST_S, BURST_CLIENTS = 0.4, 20.0, 48
KILL_AT = 0.6
# Answers that may fail while Triton is down: from the kill until the first 200 after it, + 5 s.
KILL_SETTLE_S = 5.0
SAMPLE_EVERY_S = 30.0
MODEL = "epithre-embed"


@dataclass
class Soak:
    statuses: Counter[int] = field(default_factory=Counter)
    errors_5xx: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, status)
    items_ok: int = 0
    killed_at: float | None = None
    back_at: float | None = None  # first 200 after the kill
    samples: list[dict] = field(default_factory=list)

    def outside_kill_window(self) -> list[tuple[float, int]]:
        if self.killed_at is None:
            return self.errors_5xx
        end = (self.back_at or float("inf")) + KILL_SETTLE_S
        return [(t, s) for t, s in self.errors_5xx if not self.killed_at <= t <= end]


def _png(seed: int) -> str:
    rng = random.Random(seed)
    image = Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BAD_BODIES = [
    b"{not json",
    orjson.dumps({"model": MODEL, "input": ["a"] * 65}),
    orjson.dumps({"model": "gpt-4", "input": "a"}),
    orjson.dumps({"model": MODEL, "input": [{"type": "image", "image": "bm90IGFuIGltYWdl"}]}),
    orjson.dumps({"model": MODEL, "input": "a", "dimensions": 0}),
]


class Traffic:
    def __init__(
        self, base_url: str, texts: list[str], started: float, soak: Soak, duration_s: float
    ) -> None:
        self.base_url = base_url
        self.duration_s = duration_s
        self.texts = texts
        self.started = started
        self.soak = soak

    def now(self) -> float:
        return time.monotonic() - self.started

    async def post(self, http: aiohttp.ClientSession, body: bytes, items: int) -> int:
        headers = {"Content-Type": "application/json"}
        async with http.post("/v1/embeddings", data=body, headers=headers) as response:
            await response.read()
        status = response.status
        self.soak.statuses[status] += 1
        if status >= 500:
            self.soak.errors_5xx.append((self.now(), status))
        elif status == 200:
            self.soak.items_ok += items
            if self.soak.killed_at is not None and self.soak.back_at is None:
                self.soak.back_at = self.now()
        return status

    async def texts_loop(self, http, until: float, seed: int) -> None:
        rng = random.Random(seed)
        while self.now() < until:
            batch = rng.sample(self.texts, rng.randint(1, 16))
            await self.post(http, orjson.dumps({"model": MODEL, "input": batch}), len(batch))
            await asyncio.sleep(rng.uniform(0.05, 0.3))

    async def images_loop(self, http, until: float) -> None:
        pictures = [_png(i) for i in range(16)]
        rng = random.Random(7)
        while self.now() < until:
            items = [{"type": "image", "image": rng.choice(pictures)} for _ in range(2)]
            await self.post(http, orjson.dumps({"model": MODEL, "input": items}), len(items))
            await asyncio.sleep(0.5)

    async def bad_loop(self, http, until: float) -> None:
        rng = random.Random(11)
        while self.now() < until:
            await self.post(http, rng.choice(BAD_BODIES), 0)
            await asyncio.sleep(0.5)

    async def leaving_loop(self, until: float) -> None:
        """64-text requests whose clients give up after 0.2 s."""
        body = orjson.dumps({"model": MODEL, "input": self.texts[:64]})
        timeout = aiohttp.ClientTimeout(total=0.2)
        async with aiohttp.ClientSession(self.base_url, timeout=timeout) as http:
            headers = {"Content-Type": "application/json"}
            while self.now() < until:
                try:
                    async with http.post("/v1/embeddings", data=body, headers=headers) as response:
                        await response.read()
                except TimeoutError:
                    pass
                await asyncio.sleep(2.0)

    async def burst(self) -> None:
        """BURST_CLIENTS clients of their own, gone when it ends (their connections close)."""
        await asyncio.sleep(max(0.0, BURST_AT * self.duration_s - self.now()))
        until = self.now() + BURST_S
        body = orjson.dumps({"model": MODEL, "input": self.texts[:64]})
        connector = aiohttp.TCPConnector(limit=BURST_CLIENTS)
        async with aiohttp.ClientSession(self.base_url, connector=connector) as http:

            async def client() -> None:
                while self.now() < until:
                    status = await self.post(http, body, 64)
                    if status != 200:
                        await asyncio.sleep(1.0)

            await asyncio.gather(*(client() for _ in range(BURST_CLIENTS)))


def _triton_pid(runner_pid: int) -> int | None:
    tree = process_tree(runner_pid)
    return next((p for p in tree if command_line(p).split(" ")[0].endswith("tritonserver")), None)


def _gateway_pid(runner_pid: int) -> int | None:
    return next((p for p in process_tree(runner_pid) if "-m gateway" in command_line(p)), None)


def _fds(pids: list[int]) -> int:
    count = 0
    for pid in pids:
        try:
            count += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return count


async def _sampler(runner_pid: int, traffic: Traffic, until: float) -> None:
    while traffic.now() < until:
        gateway, triton = _gateway_pid(runner_pid), _triton_pid(runner_pid)
        if gateway is not None and triton is not None:
            triton_tree = process_tree(triton)
            traffic.soak.samples.append(
                {
                    "t": traffic.now(),
                    "gateway_rss": rss_mib([gateway]),
                    "gateway_fds": _fds([gateway]),
                    "triton_rss": rss_mib(triton_tree),
                    "triton_fds": _fds(triton_tree),
                }
            )
        await asyncio.sleep(SAMPLE_EVERY_S)


async def _killer(runner_pid: int, traffic: Traffic) -> None:
    await asyncio.sleep(max(0.0, KILL_AT * traffic.duration_s - traffic.now()))
    pid = _triton_pid(runner_pid)
    if pid is not None:
        traffic.soak.killed_at = traffic.now()
        os.kill(pid, signal.SIGKILL)


async def soak(base_url: str, runner_pid: int, duration_s: float) -> Soak:
    result = Soak()
    traffic = Traffic(base_url, sentences(256), time.monotonic(), result, duration_s)
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(base_url, connector=connector) as http:
        await asyncio.gather(
            *(traffic.texts_loop(http, duration_s, seed) for seed in range(4)),
            traffic.images_loop(http, duration_s),
            traffic.bad_loop(http, duration_s),
            traffic.leaving_loop(duration_s),
            traffic.burst(),
            _killer(runner_pid, traffic),
            _sampler(runner_pid, traffic, duration_s + 1),
        )
    return result


def _growth(samples: list[dict], key: str, from_s: float) -> tuple[float, float, float]:
    later = [s for s in samples if s["t"] >= from_s]
    first, last = later[0][key], later[-1][key]
    return first, last, (last / first - 1) * 100 if first else float("nan")


def report(result: Soak, duration_s: float) -> str:
    statuses = ", ".join(f"{n:,} x {s}" for s, n in sorted(result.statuses.items()))
    outside = result.outside_kill_window()
    back = (
        f"{result.back_at - result.killed_at:.1f} s"
        if result.killed_at is not None and result.back_at is not None
        else "never"
    )
    lines = [
        "# Reliability",
        "",
        f"Command: `{COMMAND}` ({duration_s / 60:.0f} minutes on 2 cores). Mixed traffic against",
        "`python -m runner` as `make serve` runs it: 4 clients of 1-16 texts, 1 client of 2",
        "images, 1 client of bad requests (bad JSON, 65 texts, wrong model, broken image, bad",
        "dimensions), 1 client of 64-text requests that leaves after 0.2 s, an overload burst of",
        f"{BURST_CLIENTS} clients sending 64-text requests from minute "
        f"{BURST_AT * duration_s / 60:.0f} for {BURST_S:.0f} s, and `kill -9` of tritonserver at "
        f"minute {KILL_AT * duration_s / 60:.0f}, which the supervisor restarts.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| answers | {statuses} |",
        f"| 5xx outside the kill window | {len(outside)} |",
        f"| 5xx inside the kill window | {len(result.errors_5xx) - len(outside)} |",
        f"| from the kill to the first 200 | {back} |",
        f"| goodput (items answered 200) | {result.items_ok / duration_s:.1f} items/s |",
    ]
    for key, name in (
        ("gateway_rss", "gateway RSS MiB"),
        ("gateway_fds", "gateway open fds"),
        ("triton_rss", "tritonserver + stubs RSS MiB"),
        ("triton_fds", "tritonserver + stubs open fds"),
    ):
        # Minute 2 of ten: after the warm-up allocations, before the steady state is judged.
        first, last, growth = _growth(result.samples, key, 0.2 * duration_s)
        lines.append(
            f"| {name}, minute {0.2 * duration_s / 60:.0f} -> end | {first:.0f} -> {last:.0f} "
            f"({growth:+.1f}%) |"
        )
    lines += [
        "",
        "Samples every 30 s (seconds in: gateway RSS MiB/fds, tritonserver + stubs RSS MiB/fds):",
        "",
        ", ".join(
            f"{s['t']:.0f}: {s['gateway_rss']:.0f}/{s['gateway_fds']}, "
            f"{s['triton_rss']:.0f}/{s['triton_fds']}"
            for s in result.samples
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, runner_process(Path(workdir)) as running:
        runner, base_url = running
        result = asyncio.run(soak(base_url, runner.pid, args.minutes * 60))
    text = report(result, args.minutes * 60)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
