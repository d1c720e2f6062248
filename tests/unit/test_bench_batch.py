"""The batch benchmark's lines, ratios and section of docs/benchmarks.md."""

from __future__ import annotations

import orjson

from bench.batch import (
    HEADING,
    TEXTS_PER_LINE,
    BatchBench,
    BatchRun,
    batch_lines,
    section,
    texts_in,
)
from bench.load import Result
from bench.report import with_section
from gateway.batches.validation import InputCheck


def _latencies(name: str, ms: list[float]) -> Result:
    return Result(name, len(ms), len(ms) / 10, ms)


def _bench(*, beside_ms: float = 260.0, batch_texts_per_s: float = 45.0) -> BatchBench:
    return BatchBench(
        alone=_latencies("no batch", [200.0] * 100),
        beside=_latencies("beside a batch", [beside_ms] * 100),
        others_cores=(0.1, 0.25),
        beside_batch_texts=300,
        sporadic_alone=_latencies("no batch", [50.0] * 10),
        sporadic_beside=_latencies("beside a batch", [400.0] * 10),
        batch=BatchRun(lines=2_000, texts=4_500, seconds=4_500 / batch_texts_per_s),
        baseline={
            2: Result("64-text requests, 2 in flight", 1024, 1024 / 40.0, [1.0]),
            4: Result("64-text requests, 4 in flight", 1024, 1024 / 50.0, [1.0]),
        },
    )


def test_lines_are_valid_batch_lines_of_one_to_four_texts_with_unique_ids():
    lines = batch_lines([f"teks {i}" for i in range(10)], model="epithre-embed", lines=200)
    check = InputCheck(max_tokens=256)
    requests = [check.add(number, line) for number, line in enumerate(lines, 1)]
    assert check.finish() == [] and None not in requests
    sizes = [len(orjson.loads(r.body)["input"]) for r in requests if r is not None]
    low, high = TEXTS_PER_LINE
    assert set(sizes) == set(range(low, high + 1))
    assert texts_in(lines) == sum(sizes)


def test_ratios_are_p95_beside_over_without_and_batch_over_the_best_64_text_throughput():
    bench = _bench()
    assert bench.p95_ratio == 260.0 / 200.0
    assert bench.best_baseline.name == "64-text requests, 4 in flight"
    assert bench.throughput_ratio == 45.0 / 50.0


def test_the_section_judges_each_criterion_against_its_target():
    met = section(_bench(), command="make bench", cores=2)
    p95 = "| realtime p95 beside a batch / without, 8 in flight | <= 1.5 (goal 1.3) | 1.30 | yes |"
    assert p95 in met
    assert "| batch alone / 64-text requests, texts/s | >= 0.8 | 0.90 | yes |" in met
    missed = section(_bench(beside_ms=320.0, batch_texts_per_s=35.0), command="make bench", cores=2)
    assert "| 1.60 | NO |" in missed and "| 0.70 | NO |" in missed
    assert "Command: `make bench`, one stack on 2 cores" in met
    assert "used 0.10 cores on average during the windows without a batch and 0.25" in met
    assert "during the windows beside it: 300 (30.0 texts/s)" in met


def test_the_section_replaces_its_old_self_and_keeps_the_sections_around_it():
    page = f"# Benchmarks\n\n## Overload\nrows\n\n{HEADING}\nold numbers\n\n## Later\nkept\n"
    updated = with_section(page, HEADING, f"{HEADING}\nnew numbers\n")
    assert updated == page.replace("old numbers", "new numbers")
    assert with_section(updated, HEADING, f"{HEADING}\nnew numbers\n") == updated


def test_the_section_is_appended_to_a_page_without_one():
    assert with_section("# Benchmarks\nrows\n", HEADING, f"{HEADING}\nnumbers\n") == (
        f"# Benchmarks\nrows\n\n{HEADING}\nnumbers\n"
    )
