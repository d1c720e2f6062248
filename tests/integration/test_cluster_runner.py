"""`running_cluster` (runner/cluster.py), the topology of `make cluster`: HAProxy in front of two
gateways, each with one channel to two Tritons, Prometheus scraping all four, every process
supervised. One cluster serves the module; its last test stops it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from model_repository import wire
from runner.cluster import Cluster, running_cluster
from runner.haproxy import SERVERS
from runner.processes import process_tree, wait_gone
from runner.prometheus import poll_api
from runner.triton import SHM_DIR

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"
TEXTS = ["a cat sits on the mat", "the stock market fell today"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def _embed(url: str, texts: list[str]) -> np.ndarray:
    response = httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60)
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]])


def test_a_request_through_haproxy_gets_the_vectors_a_gateway_gives(cluster: Cluster) -> None:
    through = _embed(cluster.url, TEXTS)
    direct = _embed(cluster.gateways[0].child.base_url, TEXTS)
    assert through.shape == (2, 384)
    assert np.allclose(np.linalg.norm(through, axis=1), 1.0, atol=1e-4)
    assert np.allclose(through, direct, atol=1e-5)
    assert cluster.haproxy.child.server_states() == dict.fromkeys(SERVERS, "UP")


def test_each_triton_runs_one_instance_of_each_tower(cluster: Cluster) -> None:
    for triton in cluster.tritons:
        url = f"http://127.0.0.1:{triton.child.ports.http}/v2/models/{wire.TEXT_ENCODER}/config"
        groups = httpx.get(url, timeout=10).json()["instance_group"]
        assert [group["count"] for group in groups] == [1]


def _up(data: Any) -> dict[tuple[str, str], str]:
    return {
        (r["metric"]["job"], r["metric"]["instance"]): r["value"][1]
        for r in (data or {}).get("result", [])
    }


def test_prometheus_scrapes_both_gateways_and_both_tritons(cluster: Cluster) -> None:
    expected = {
        **{("gateway", f"127.0.0.1:{g.child.metrics_port}"): "1" for g in cluster.gateways},
        **{("triton", f"127.0.0.1:{t.child.ports.metrics}"): "1" for t in cluster.tritons},
    }
    data = poll_api(
        cluster.prometheus_url,
        "/api/v1/query",
        lambda data: _up(data) == expected,
        deadline_s=30,
        query="up",
    )
    assert _up(data) == expected


def test_stopping_the_cluster_leaves_no_process_and_no_shared_memory(cluster: Cluster) -> None:
    supervisors = [supervisor for layer in cluster.layers for supervisor in layer]
    assert {s.name for s in supervisors} >= {"haproxy", "prometheus", "redis"}
    pids = [pid for supervisor in supervisors for pid in process_tree(supervisor.pid)]
    # The servers, their Python stubs (five models, image decoders twice), and the other five.
    assert len(pids) >= 2 * 7 + 5
    regions = [region for t in cluster.tritons for region in t.child.shm_regions]
    assert regions
    cluster.stop()
    assert wait_gone(pids, deadline_s=10) == []
    assert [region for region in regions if (SHM_DIR / region).exists()] == []
