"""What deploy/ observes is real: every metric its alerts and dashboard read is exported by the
live gateway or Triton, and Debian's prometheus scrapes both with the deployment's config and
loads its rules. One stack, its gateway serving /metrics on EPITHRE_METRICS_PORT, serves the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.prometheus import BINARY, LocalPrometheus, poll_api
from runner.stack import Stack, running_stack
from runner.triton import free_port
from tests.promql import (
    alert_rules,
    exposed_names,
    expressions,
    metric_names,
)

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"
# Series Prometheus itself writes for every target it scrapes.
SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
DEADLINE_S = 30.0


@dataclass(frozen=True)
class Observed:
    stack: Stack
    metrics_port: int

    @property
    def gateway_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("observability")
    with running_stack(workdir, EPITHRE_METRICS_PORT=str(port)) as stack:
        # Traffic, so that the series labelled by path and status exist: two embeddings and one
        # request refused with 400.
        url = f"{stack.base_url}/v1/embeddings"
        for body in ({"input": "one text"}, {"input": ["two", "texts"]}, {"input": []}):
            httpx.post(url, json={"model": MODEL, **body}, timeout=60)
        yield Observed(stack=stack, metrics_port=port)


def test_public_port_answers_404_for_metrics_served_on_the_metrics_port(observed: Observed):
    public = httpx.get(f"{observed.stack.base_url}/metrics", timeout=10)
    assert public.status_code == 404
    assert public.json()["error"]["type"] == "invalid_request_error"

    metrics = httpx.get(observed.gateway_metrics_url, timeout=10)
    assert metrics.status_code == 200
    samples = metrics.text.splitlines()
    for series in (
        'epithre_http_requests_total{path="/v1/embeddings",status="200"} 2.0',
        'epithre_http_requests_total{path="/v1/embeddings",status="400"} 1.0',
        'epithre_http_requests_total{path="/metrics",status="404"} 1.0',
        "epithre_admitted_requests_total 2.0",
        "epithre_circuit_open 0.0",
    ):
        assert series in samples


def test_every_metric_in_the_alerts_and_the_dashboard_is_exported(observed: Observed):
    exported = (
        exposed_names(httpx.get(observed.gateway_metrics_url, timeout=10).text)
        | exposed_names(httpx.get(observed.stack.triton.metrics_url, timeout=10).text)
        | SCRAPE_SERIES
    )
    read = {where: metric_names(expr) for where, expr in expressions().items()}
    assert [where for where, names in read.items() if not names] == []
    missing = {where: sorted(names - exported) for where, names in read.items() if names - exported}
    assert missing == {}


@pytest.fixture
def prometheus(observed: Observed, tmp_path: Path) -> Iterator[str]:
    """Debian's prometheus with the deployment's config, its jobs pointed at the test stack."""
    if BINARY is None:
        pytest.skip("prometheus is missing (Debian package `prometheus`; `make install`)")
    targets = {
        "gateway": [f"127.0.0.1:{observed.metrics_port}"],
        "triton": [f"127.0.0.1:{observed.stack.triton.ports.metrics}"],
    }
    prometheus = LocalPrometheus(targets, port=free_port(), workdir=tmp_path)
    prometheus.start()
    try:
        yield prometheus.url
    finally:
        prometheus.stop()
    assert prometheus.process is not None
    if prometheus.process.returncode not in (0, -15):
        pytest.fail(
            f"prometheus exited with {prometheus.process.returncode}:\n"
            f"{prometheus.log_path.read_text()}"
        )


def _up(data: dict[str, Any] | None) -> dict[str, str]:
    return {r["metric"]["job"]: r["value"][1] for r in (data or {}).get("result", [])}


def _rules(data: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for g in (data or {}).get("groups", []) for r in g["rules"]}


def test_prometheus_scrapes_both_jobs_and_evaluates_every_alert(prometheus: str):
    up = poll_api(
        prometheus,
        "/api/v1/query",
        lambda d: _up(d) == {"gateway": "1", "triton": "1"},
        deadline_s=DEADLINE_S,
        query="up",
    )
    assert _up(up) == {"gateway": "1", "triton": "1"}

    rules = _rules(
        poll_api(
            prometheus,
            "/api/v1/rules",
            lambda d: bool(_rules(d)) and all(r["health"] == "ok" for r in _rules(d).values()),
            deadline_s=DEADLINE_S,
        )
    )
    assert sorted(rules) == sorted(rule["alert"] for rule in alert_rules())
    assert {
        name: (r["type"], r["health"], r.get("lastError", "")) for name, r in rules.items()
    } == {name: ("alerting", "ok", "") for name in rules}
    # A healthy stack: nothing pending, nothing firing.
    assert [(name, r["state"]) for name, r in rules.items() if r["state"] != "inactive"] == []
