"""The benchmark report judges issue 5's criteria from one run's numbers."""

from __future__ import annotations

from bench.baselines import Throughput
from bench.load import Result
from bench.report import (
    BATCHED,
    BURST_BATCHED,
    BURST_GATHER,
    BURST_SEQUENTIAL,
    OURS,
    SINGLES_64,
    Run,
    acceptance,
    render,
)


def _result(name: str, items: int, seconds: float, *, target: str = OURS, **extra) -> Result:
    return Result(name, items, seconds, [seconds * 1000], target=target, **extra)


def _run(*, batched_s: float = 10.0, peer_s: float = 20.0) -> Run:
    return Run(
        command="make bench",
        machine="test",
        texts=640,
        mean_tokens=100.0,
        ceiling_by_batch={1: Throughput(60.0, 30.0), 8: Throughput(64.0, 31.0)},
        ceiling_recheck=Throughput(62.0, 30.0),
        sentence_transformers=50.0,
        burst_in_process=(0.20, 0.19),
        results=[
            _result(BATCHED, 640, batched_s, cpu_seconds=640 * 0.032),
            _result(SINGLES_64, 640, 11.0, merged=12.0),
            _result(BATCHED, 640, peer_s, target="infinity-emb torch"),
            _result(BURST_SEQUENTIAL, 10, 0.21),
            _result(BURST_BATCHED, 10, 0.20),
            _result(BURST_GATHER, 10, 0.24),
        ],
        token_positions={"real": 90.0, "padding": 10.0},
        memory_mib=(100.0, 104.0),
        sustained_requests=10_000,
        peak_mib={"gateway": 110.0},
        images={"images_per_s": 50.0, "batch": 8, "preprocess_ms": 10.0, "mean_bytes": 1024.0},
        image_results=[_result("single-image requests, 8 in flight", 100, 2.2)],
    )


def test_every_criterion_is_met_by_numbers_that_meet_it():
    rows = acceptance(_run())
    assert len(rows) == 9
    assert all(met for *_, met in rows), rows


def test_the_ceiling_is_the_best_batch_size_or_its_recheck_whichever_is_faster():
    run = _run()
    assert run.ceiling_batch == 8
    assert run.ceiling.items_per_s == 64.0


def test_served_throughput_below_080_of_the_ceiling_fails_its_criterion():
    rows = {name: (value, met) for name, _, value, met in acceptance(_run(batched_s=14.0))}
    value, met = rows["64-text requests / ceiling, wall time"]
    assert round(value, 2) == round(640 / 14.0 / 64.0, 2)
    assert not met


def test_a_peer_within_120_percent_of_us_fails_the_peer_criterion():
    rows = {name: met for name, _, _, met in acceptance(_run(peer_s=11.0))}
    assert not rows["64-text requests / best infinity-emb engine"]


def test_the_report_names_the_command_and_every_target():
    text = render(_run(), plot="plot.png")
    assert "Command: `make bench`" in text
    assert "infinity-emb torch: 64-text requests, sequential" in text
    assert "![throughput against requests in flight](plot.png)" in text


def test_sections_below_the_kept_marker_survive_a_new_report(tmp_path):
    from bench.__main__ import KEPT, kept_sections

    report = tmp_path / "benchmarks.md"
    report.write_text(f"# old run\nold table\n\n{KEPT}\n## Parse and render\nrow\n")
    assert kept_sections(report) == f"\n{KEPT}\n## Parse and render\nrow\n"
    report.write_text("# a report without kept sections\n")
    assert kept_sections(report) == ""
