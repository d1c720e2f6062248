"""Throughput against concurrency as a PNG for docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_throughput(
    series: dict[str, dict[int, float]],
    path: Path,
    *,
    ceilings: dict[str, float] | None = None,
    unit: str = "items",
) -> None:
    """One line per server ({concurrency: items/s}); each ceiling a dashed horizontal line.

    Usage: `plot_throughput({"gateway+Triton": {1: 40.0, 8: 95.0, 64: 110.0}}, Path("t.png"),
    ceilings={"ONNX Runtime in-process": 120.0})`
    """
    # A Figure on the Agg canvas, not pyplot: no global backend or figure state to leak.
    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    for name, points in series.items():
        concurrency = sorted(points)
        axes.plot(concurrency, [points[c] for c in concurrency], marker="o", label=name)
    # Ceilings continue the colour cycle, so no ceiling shares a colour with a series.
    for i, (name, value) in enumerate((ceilings or {}).items(), start=len(series)):
        axes.axhline(value, linestyle="--", color=colours[i % len(colours)], label=name)
    ticks = sorted({c for points in series.values() for c in points})
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, [str(t) for t in ticks])
    axes.minorticks_off()  # minor ticks on a log axis would mark concurrencies never measured
    axes.set_ylim(bottom=0)
    axes.set_xlabel("requests in flight")
    axes.set_ylabel(f"{unit}/s")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
