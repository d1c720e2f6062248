"""`python -m bench.hops`: where the time of one request goes at 1 in flight (issue 16).

One short text and the corpus's texts, each sent one request at a time three ways: through
the gateway (HTTP), straight to Triton's text ensemble (gRPC, the call the gateway makes) and
in-process (the tokenizer and ONNX Runtime on the served files). Triton's statistics, read
before and after the served requests, split Triton's share into each model's queue and compute
time, and /proc gives the CPU time each process used for them. Writes its section of
docs/benchmarks.md in place.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import tritonclient.grpc as grpcclient

from bench.baselines import TextCeiling
from bench.corpus import sentences
from bench.processes import cpu_seconds
from bench.report import p50, write_section
from model_repository import wire
from runner.processes import arguments, process_tree
from runner.stack import DEFAULT_REPOSITORY, ROOT, Stack, running_stack

COMMAND = "PYTHONPATH=. .venv/bin/python -m bench.hops"
HEADING = "## Where the time of one request goes (issue 16)"
MODEL = "epithre-embed"
MAX_TOKENS = 256
SHORT_TEXT = "halo"
REQUESTS = 300
JSON = {"Content-Type": "application/json"}
WARM_UP = 20
# Issue 16's overhead is the difference of two p50s, the short text through the gateway and
# in-process: make bench measures them in turns, this many blocks each, so that both halves see
# the machine as it is then (its speed drifts over a run).
OVERHEAD_BLOCKS = 5
# In-process calls back to back find the weights they stream still in the caches; at 1 in flight
# the served tower waits about this long between two requests (the rest of a request's time), so
# an in-process call after as long idle shows what those caches were worth.
IDLE_BEFORE_S = 0.008
# The ensemble first: its figures are the whole of Triton's time; then its steps in order.
MODELS = (wire.ENSEMBLE_TEXT, wire.TEXT_PREPROCESS, wire.TEXT_ENCODER, wire.POSTPROCESS)
PARTS = ("queue", "compute_input", "compute_infer", "compute_output")
# The processes whose CPU time a served request is charged, in the order of its path; the models'
# are their Python stubs (MODELS[1:]), the client is this process.
GATEWAY, SERVER, CLIENT = "gateway", "tritonserver", "the benchmark's HTTP client"


@dataclass(frozen=True)
class ModelTimes:
    """A model's mean milliseconds per request over a window, from Triton's statistics."""

    requests: int
    total_ms: float  # request received to response sent
    parts_ms: dict[str, float]  # PARTS

    @property
    def others_ms(self) -> float:
        """Inside the model's span but in none of its parts: the backend's own handling."""
        return self.total_ms - sum(self.parts_ms.values())


def statistics_ns(grpc_url: str) -> dict[str, dict[str, tuple[int, int]]]:
    """(count, ns) of success and of every part, per model."""
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        out = {}
        for model in MODELS:
            (stats,) = client.get_inference_statistics(model).model_stats
            inference = stats.inference_stats
            out[model] = {
                name: (getattr(inference, name).count, getattr(inference, name).ns)
                for name in ("success", *PARTS)
            }
        return out
    finally:
        client.close()


def model_times(before: dict, after: dict) -> dict[str, ModelTimes]:
    times = {}
    for model in MODELS:
        requests = after[model]["success"][0] - before[model]["success"][0]

        def mean_ms(name: str, model: str = model, requests: int = requests) -> float:
            return (after[model][name][1] - before[model][name][1]) / requests / 1e6

        times[model] = ModelTimes(
            requests, mean_ms("success"), {name: mean_ms(name) for name in PARTS}
        )
    return times


def processes(stack: Stack) -> dict[str, list[int]]:
    """The stack's processes by what they run: the gateway, tritonserver, each model's stubs."""
    found: dict[str, list[int]] = {GATEWAY: process_tree(stack.gateway.pid), SERVER: []}
    assert stack.triton.process is not None
    for pid in process_tree(stack.triton.process.pid):
        argv = arguments(pid)
        # A stub runs `triton_python_backend_stub <repository>/<model>/<version>/model.py ...`.
        if len(argv) > 1 and argv[0].endswith("_stub"):
            found.setdefault(Path(argv[1]).parts[-3], []).append(pid)
        else:
            found[SERVER].append(pid)
    return found


def cpu_s(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes, and by this one (CLIENT)."""
    used = {name: cpu_seconds(pids) for name, pids in groups.items()}
    return {**used, CLIENT: time.process_time()}


async def served_ms(base_url: str, texts: list[str]) -> list[float]:
    """One request per text through the gateway, one at a time, on one connection."""
    latencies = []
    async with aiohttp.ClientSession(base_url) as http:
        for text in texts:
            body = orjson.dumps({"model": MODEL, "input": text})
            started = time.perf_counter()
            async with http.post("/v1/embeddings", data=body, headers=JSON) as response:
                await response.read()
                response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def ensemble_inputs(texts: list[str]) -> list[grpcclient.InferInput]:
    """The text ensemble's inputs for `texts`, as the gateway sends them (no instruction, cut at
    the end, native dimensions)."""
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
    return [*inputs, dimensions]


def grpc_ms(grpc_url: str, texts: list[str]) -> list[float]:
    """One request per text straight to the ensemble, one at a time."""
    client = grpcclient.InferenceServerClient(grpc_url)
    latencies = []
    try:
        for text in texts:
            inputs = ensemble_inputs([text])
            started = time.perf_counter()
            client.infer(wire.ENSEMBLE_TEXT, inputs, client_timeout=60)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        client.close()
    return latencies


def in_process_ms(
    work: Callable[[str], object], texts: list[str], *, idle_before_s: float = 0.0
) -> list[float]:
    latencies = []
    for text in texts:
        if idle_before_s:
            time.sleep(idle_before_s)
        started = time.perf_counter()
        work(text)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def in_process_batch_1_ms(
    ceiling: TextCeiling, texts: list[str], *, idle_before_s: float = 0.0
) -> list[float]:
    """Each text alone through the tokenizer and ONNX Runtime, as a request at 1 in flight."""
    return in_process_ms(lambda text: ceiling.embed([text]), texts, idle_before_s=idle_before_s)


def one_word_ms(
    base_url: str, ceiling: TextCeiling, *, requests: int, blocks: int = OVERHEAD_BLOCKS
) -> tuple[list[float], list[float]]:
    """SHORT_TEXT about `requests` times through the gateway and as many in-process, in turns of
    `blocks` blocks each; the first WARM_UP of every block (a new connection) are dropped."""
    served: list[float] = []
    in_process: list[float] = []
    block = [SHORT_TEXT] * (WARM_UP + math.ceil(requests / blocks))
    for _ in range(blocks):
        in_process += in_process_batch_1_ms(ceiling, block)[WARM_UP:]
        served += asyncio.run(served_ms(base_url, block))[WARM_UP:]
    return served, in_process


@dataclass(frozen=True)
class Hops:
    """One kind of text's latencies each way (ms), and Triton's split of the served requests."""

    label: str
    served: list[float]
    grpc: list[float]
    tokenize: list[float]
    in_process: list[float]  # tokenizing included, all cores, batch 1
    in_process_idle: list[float]  # the same, each call after IDLE_BEFORE_S idle
    models: dict[str, ModelTimes]
    cpu_ms: dict[str, float]  # CPU per served request, by process (`processes`, CLIENT)


def measure(label: str, texts: list[str], stack: Stack, ceiling: TextCeiling) -> Hops:
    """`texts` one request at a time each way; Triton's statistics over the served requests."""
    for text in texts[:WARM_UP]:
        ceiling.embed([text])
    asyncio.run(served_ms(stack.base_url, texts[:WARM_UP]))
    grpc = grpc_ms(stack.triton.grpc_url, texts)
    before = statistics_ns(stack.triton.grpc_url)
    groups = processes(stack)
    cpu_before = cpu_s(groups)
    served = asyncio.run(served_ms(stack.base_url, texts))
    cpu_after = cpu_s(groups)
    models = model_times(before, statistics_ns(stack.triton.grpc_url))
    cpu_ms = {name: (cpu_after[name] - cpu_before[name]) / len(texts) * 1000 for name in cpu_after}
    tokenize = in_process_ms(ceiling.tokenizer.encode, texts)
    in_process = in_process_batch_1_ms(ceiling, texts)
    idle = in_process_batch_1_ms(ceiling, texts, idle_before_s=IDLE_BEFORE_S)
    return Hops(label, served, grpc, tokenize, in_process, idle, models, cpu_ms)


def section(runs: list[Hops], *, cores: int) -> str:
    lines = [
        HEADING,
        "",
        f"Command: `{COMMAND}`, on x86_64 with {cores} cores, the `make serve` settings. Each",
        "text is sent one request at a time through the gateway (HTTP), straight to Triton's",
        "text ensemble (gRPC, the call the gateway makes) and in-process (the tokenizer and ONNX",
        "Runtime on the served files, all cores, batch 1). Triton's part is split by its",
        "statistics, read before and after the requests through the gateway: mean milliseconds",
        "per request. CPU per request: what each process used (user and system time, from",
        "/proc) over the requests through the gateway, over their count; a model's row is its",
        "Python stubs, every instance and thread (ONNX Runtime's included). In-process calls",
        "back to back find the weights the previous one streamed still in the caches; the",
        f"served tower waits about {IDLE_BEFORE_S * 1000:.0f} ms between two requests at 1 in",
        "flight, so the row with as long idle before each call shows what they were worth.",
        "",
        "| | " + " | ".join(r.label for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]

    def row(name: str, values: list[float]) -> None:
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")

    row("through the gateway, p50", [p50(r.served) for r in runs])
    row("straight to Triton over gRPC, p50", [p50(r.grpc) for r in runs])
    row("gateway and HTTP (the difference)", [p50(r.served) - p50(r.grpc) for r in runs])
    row(
        f"Triton: {wire.ENSEMBLE_TEXT}, request to response (mean)",
        [r.models[wire.ENSEMBLE_TEXT].total_ms for r in runs],
    )
    for model in MODELS[1:]:
        for part in PARTS:
            row(
                f"- {model}: {part.replace('_', ' ')}",
                [r.models[model].parts_ms[part] for r in runs],
            )
        row(f"- {model}: backend's own handling", [r.models[model].others_ms for r in runs])
    row(
        "- between the steps (the ensemble's own)",
        [
            r.models[wire.ENSEMBLE_TEXT].total_ms - sum(r.models[m].total_ms for m in MODELS[1:])
            for r in runs
        ],
    )
    row("in-process: tokenizing, p50", [p50(r.tokenize) for r in runs])
    row("in-process: tokenizing and ONNX Runtime, p50", [p50(r.in_process) for r in runs])
    row(
        f"in-process: the same, each call after {IDLE_BEFORE_S * 1000:.0f} ms idle, p50",
        [p50(r.in_process_idle) for r in runs],
    )
    row(
        "overhead: through the gateway less in-process, p50",
        [p50(r.served) - p50(r.in_process) for r in runs],
    )
    for name in (GATEWAY, SERVER, *MODELS[1:], CLIENT):
        row(f"CPU per request: {name}", [r.cpu_ms[name] for r in runs])
    row("CPU per request: all of them", [sum(r.cpu_ms.values()) for r in runs])
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    kinds = [
        (f"one word ({SHORT_TEXT!r})", [SHORT_TEXT] * args.requests),
        ("the corpus's texts", sentences(args.requests)),
    ]
    ceiling = TextCeiling(DEFAULT_REPOSITORY, max_tokens=MAX_TOKENS)
    with tempfile.TemporaryDirectory() as workdir, running_stack(Path(workdir)) as stack:
        runs = [measure(label, texts, stack, ceiling) for label, texts in kinds]
    text = section(runs, cores=len(os.sched_getaffinity(0)))
    write_section(args.output, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
