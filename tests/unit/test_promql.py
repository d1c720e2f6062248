"""The metric-name reader of tests/promql.py: what counts as a name in PromQL and what does not."""

from __future__ import annotations

import pytest

from tests.promql import exposed_names, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (le) (rate(a_bucket{path="/v1/x", le=~"0.5|1"}[5m]))',
            {"a_bucket"},
        ),
        ("sum(rate(a[5m])) by (job) / ignoring (le) group_left (model) b", {"a", "b"}),
        ("histogram_quantile(0.95, x) > bool 5 and y unless z or w", {"x", "y", "z", "w"}),
        ("a / on (instance) group_left b offset 1h30m", {"a", "b"}),
        ('count_values("version", build_info)', {"build_info"}),
        ('{__name__="by_name", job="triton"} * 1e6 + inf', {"by_name"}),
        ("rate(x[$__rate_interval]) / ${factor}", {"x"}),
        ("max_over_time(deriv(g[1h:5m])[1d:]) @ start()", {"g"}),
        ("SUM WITHOUT (instance) (m) # sum of m\n  > 0x10", {"m"}),
        ('label_replace(v, "dst_label", "$1", "src", "(.*)")', {"v"}),
        ('topk(3, sum by (model) (q{reason="it is not_a_name"}))', {"q"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exposed_names_include_declared_families_without_samples() -> None:
    exposition = """\
# HELP rejected_total Refused requests
# TYPE rejected_total counter
# HELP latency_seconds Latency
# TYPE latency_seconds histogram
latency_seconds_bucket{le="+Inf"} 1.0
latency_seconds_count 1.0
latency_seconds_sum 0.1
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} 7
"""
    assert exposed_names(exposition) == {
        "rejected_total",
        "latency_seconds_bucket",
        "latency_seconds_count",
        "latency_seconds_sum",
        "nv_inference_count",
    }
