"""The cluster's wiring and the order of its start and stop (runner/cluster.py), without
starting a process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runner.cluster import (
    TOWER_INSTANCES,
    Cluster,
    ClusterPorts,
    side_by_side,
    start_layers,
    stop_layers,
)
from runner.repository import CONFIG


class Member:
    """Records its starts and stops in `events`; `fails` on start or stop."""

    def __init__(self, name: str, events: list[str], *, fails: str = "") -> None:
        self.name = name
        self.events = events
        self.fails = fails

    def start(self) -> None:
        self._act("start")

    def stop(self) -> None:
        self._act("stop")

    def _act(self, action: str) -> None:
        if self.fails == action:
            raise RuntimeError(f"{self.name} failed to {action}")
        self.events.append(f"{action} {self.name}")


def _cluster(events: list[str]) -> Cluster:
    def member(name: str) -> Member:
        return Member(name, events)

    return Cluster(
        tritons=(member("triton-1"), member("triton-2")),  # type: ignore[arg-type]
        gateways=(member("gateway-1"), member("gateway-2")),  # type: ignore[arg-type]
        haproxy=member("haproxy"),  # type: ignore[arg-type]
        prometheus=member("prometheus"),  # type: ignore[arg-type]
        redis=member("redis"),  # type: ignore[arg-type]
    )


# Which layer each member is in: members of a layer start (and stop) in any order.
LAYERS = {
    "prometheus": 0,
    "redis": 0,
    "triton-1": 0,
    "triton-2": 0,
    "gateway-1": 1,
    "gateway-2": 1,
    "haproxy": 2,
}


def test_the_cluster_starts_backends_first_and_haproxy_last() -> None:
    events: list[str] = []
    _cluster(events).start()
    layers = [LAYERS[event.removeprefix("start ")] for event in events]
    assert layers == sorted(layers)
    assert sorted(events) == sorted(f"start {name}" for name in LAYERS)


def test_the_cluster_stops_haproxy_first_then_the_gateways_then_the_backends() -> None:
    events: list[str] = []
    _cluster(events).stop()
    layers = [LAYERS[event.removeprefix("stop ")] for event in events]
    assert layers == sorted(layers, reverse=True)
    assert sorted(events) == sorted(f"stop {name}" for name in LAYERS)


def test_a_failed_start_stops_every_layer_begun_last_first_and_starts_no_more() -> None:
    events: list[str] = []
    first = [Member("a", events)]
    second = [Member("b", events), Member("c", events, fails="start")]
    third = [Member("d", events)]
    with pytest.raises(RuntimeError, match="c failed to start"):
        start_layers([first, second, third])
    assert events[0] == "start a"
    assert set(events[-3:-1]) == {"stop b", "stop c"}
    assert events[-1] == "stop a"
    assert "start d" not in events


def test_a_failed_stop_does_not_keep_the_others_from_stopping() -> None:
    events: list[str] = []
    layers = [[Member("a", events)], [Member("b", events, fails="stop"), Member("c", events)]]
    with pytest.raises(RuntimeError, match="b failed to stop"):
        stop_layers(layers)
    assert events == ["stop c", "stop a"]


def test_side_by_side_runs_its_calls_at_once() -> None:
    # Each call waits for the other: one after the other, both would time out.
    both = threading.Barrier(2, timeout=5)
    side_by_side([both.wait, both.wait], fail_fast=False)


def test_a_failing_start_does_not_wait_for_a_slow_one() -> None:
    release = threading.Event()

    def fails() -> None:
        raise RuntimeError("failed")

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="failed"):
        side_by_side([lambda: release.wait(10), fails], fail_fast=True)
    assert time.monotonic() - began < 5
    release.set()


def _exported(root: Path) -> Path:
    for name in ("text_encoder", "image_encoder", "embed_text"):
        (root / name / "1").mkdir(parents=True)
        (root / name / CONFIG).write_text(f'name: "{name}"\ninstance_group {{ count: 2 }}\n')
    return root


def test_the_parts_are_wired_to_each_others_ports(tmp_path: Path) -> None:
    ports = ClusterPorts()
    cluster = Cluster.build(
        tmp_path / "cluster",
        repository=_exported(tmp_path / "export"),
        ports=ports,
        gateway_settings={"EPITHRE_DRAIN_S": "4"},
    )
    assert cluster.url == "http://127.0.0.1:8000"
    assert cluster.prometheus_url == "http://127.0.0.1:9090"
    assert [g.child.triton_url for g in cluster.gateways] == [
        "ipv4:127.0.0.1:8001,127.0.0.1:8011"
    ] * 2
    assert [(g.child.port, g.child.metrics_port) for g in cluster.gateways] == [
        (8101, 9101),
        (8102, 9102),
    ]
    assert all(g.child.drain_s == 4 for g in cluster.gateways)
    variables = cluster.haproxy.child.variables
    assert (variables["LB_BIND"], variables["LB_GATEWAY_1"], variables["LB_GATEWAY_2"]) == (
        "127.0.0.1:8000",
        "127.0.0.1:8101",
        "127.0.0.1:8102",
    )
    scraped = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in cluster.prometheus.child.config["scrape_configs"]
    }
    assert scraped == {
        "gateway": ["127.0.0.1:9101", "127.0.0.1:9102"],
        "triton": ["127.0.0.1:8002", "127.0.0.1:8012"],
    }
    # One budget per key for both gateways.
    assert cluster.redis.child.workdir == tmp_path / "cluster" / "redis"
    assert [g.child.settings["EPITHRE_RATE_LIMIT_STORAGE"] for g in cluster.gateways] == [
        "redis://127.0.0.1:6380/0"
    ] * 2
    # SQLite in the data dir they share, unless asked for PostgreSQL.
    assert cluster.postgres is None
    assert all("EPITHRE_DATABASE_URL" not in g.child.settings for g in cluster.gateways)


def test_on_postgresql_both_gateways_share_a_database_started_before_them(tmp_path: Path) -> None:
    cluster = Cluster.build(
        tmp_path / "cluster",
        repository=_exported(tmp_path / "export"),
        ports=ClusterPorts(),
        gateway_settings={},
        database="postgresql",
    )
    assert cluster.postgres is not None
    postgres = cluster.postgres.child
    assert (postgres.workdir, postgres.port, postgres.durable) == (
        tmp_path / "cluster" / "postgres",
        5433,
        True,
    )
    assert [g.child.settings["EPITHRE_DATABASE_URL"] for g in cluster.gateways] == [
        "postgresql://postgres@127.0.0.1:5433/epithre"
    ] * 2
    first, gateways, _ = cluster.layers
    assert cluster.postgres in first and cluster.gateways == gateways


def test_a_storage_given_to_the_gateways_wins_over_the_clusters_redis(tmp_path: Path) -> None:
    cluster = Cluster.build(
        tmp_path / "cluster",
        repository=_exported(tmp_path / "export"),
        ports=ClusterPorts.free(),
        gateway_settings={"EPITHRE_RATE_LIMIT_STORAGE": "memory://"},
    )
    assert [g.child.settings["EPITHRE_RATE_LIMIT_STORAGE"] for g in cluster.gateways] == [
        "memory://"
    ] * 2


def test_the_tritons_share_a_repository_with_one_instance_of_each_tower(tmp_path: Path) -> None:
    cluster = Cluster.build(
        tmp_path / "cluster",
        repository=_exported(tmp_path / "export"),
        ports=ClusterPorts.free(),
        gateway_settings={},
    )
    (served,) = {t.child.model_repository for t in cluster.tritons}
    assert served == (tmp_path / "cluster" / "repository").resolve()
    assert set(TOWER_INSTANCES) == {"text_encoder", "image_encoder"}
    for tower in TOWER_INSTANCES:
        assert "count: 1" in (served / tower / CONFIG).read_text()
    assert "count: 2" in (served / "embed_text" / CONFIG).read_text()
    # Each server its own folder: tritonserver's backends are copied into it at each start.
    assert len({t.child.workdir for t in cluster.tritons}) == 2


def test_free_ports_are_all_different() -> None:
    ports = ClusterPorts.free()
    numbers = [
        ports.haproxy,
        ports.prometheus,
        ports.redis,
        ports.postgres,
        *(p for g in ports.gateways for p in (g.http, g.metrics)),
        *(p for t in ports.tritons for p in (t.http, t.grpc, t.metrics)),
    ]
    assert len(numbers) == len(set(numbers)) == 14
