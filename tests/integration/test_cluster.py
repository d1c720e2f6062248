"""The production topology under failure: HAProxy, two gateways, two Tritons, Prometheus.

One cluster (`runner.cluster.running_cluster`, as `make cluster` runs it) serves every test, in
file order: a calm phase first (Prometheus counts it), then kills and stops under about 8 requests
in flight, then an overload; the last test stops it.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from model_repository import wire
from runner.cluster import Cluster, running_cluster
from runner.haproxy import SERVERS
from runner.processes import process_tree, wait_gone
from runner.prometheus import poll_api
from runner.triton import SHM_DIR, LocalTriton
from tests.integration.conftest import cosine, short_texts

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"
DEADLINE_S = 10.0
CLIENTS = 8
TEXTS = short_texts(24)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("cluster"), EPITHRE_REQUEST_TIMEOUT_S=str(DEADLINE_S)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def alone(cluster: Cluster) -> dict[str, np.ndarray]:
    """Each text's vector embedded alone, before anything fails."""
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        answers = {text: _post(client, [text]) for text in TEXTS}
    return {text: np.array(a.json()["data"][0]["embedding"]) for text, a in answers.items()}


def _post(client: httpx.Client, texts: list[str]) -> httpx.Response:
    return client.post("/v1/embeddings", json={"model": MODEL, "input": texts})


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | str  # the HTTP status, or the transport error's name
    wrong_vectors: int = 0


@dataclass
class Load:
    """CLIENTS threads posting 1 to 4 of TEXTS through HAProxy, one request at a time each,
    until `stop`; each answer's vectors are compared with the texts embedded alone."""

    url: str
    alone: dict[str, np.ndarray]
    outcomes: list[Outcome] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._client, args=(seed,)) for seed in range(CLIENTS)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stopping.is_set():
                texts = rng.sample(TEXTS, rng.randint(1, 4))
                started = time.monotonic()
                try:
                    response = _post(client, texts)
                except httpx.HTTPError as error:
                    self.outcomes.append(Outcome(started, time.monotonic(), type(error).__name__))
                    continue
                outcome = Outcome(started, time.monotonic(), response.status_code)
                if response.status_code == 200:
                    data = response.json()["data"]
                    outcome.wrong_vectors = sum(
                        cosine(item["embedding"], self.alone[text]) < 0.99999
                        for item, text in zip(data, texts, strict=True)
                    )
                self.outcomes.append(outcome)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    @property
    def wrong_vectors(self) -> int:
        return sum(o.wrong_vectors for o in self.outcomes)

    def answered_since(self, moment: float) -> int:
        return sum(o.started > moment and o.status == 200 for o in self.outcomes)


def _requests_served(triton: LocalTriton) -> int:
    """Requests the text ensemble answered on this Triton, successful or failed."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        stats = client.get_inference_statistics(wire.ENSEMBLE_TEXT, as_json=True)
    finally:
        client.close()
    (model,) = stats["model_stats"]
    counts = model["inference_stats"]
    return sum(int(counts.get(kind, {}).get("count", 0)) for kind in ("success", "fail"))


def _wait_for_traffic(triton: LocalTriton, *, since_count: int, until: float) -> float:
    """The moment `triton` has answered more than `since_count` requests; fails at `until`."""
    while True:
        try:
            if _requests_served(triton) > since_count:
                return time.monotonic()
        except InferenceServerException:  # restarting: not yet serving
            pass
        assert time.monotonic() < until, f"{triton.grpc_url} got no traffic in time"
        time.sleep(0.2)


def test_prometheus_scrapes_every_replica_and_counts_every_request_sent(cluster):
    sent = 30
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        statuses = [_post(client, [TEXTS[i % len(TEXTS)]]).status_code for i in range(sent)]
    assert statuses == [200] * sent
    up = _query(
        cluster,
        'up{job=~"gateway|triton"}',
        lambda r: [x["value"][1] for x in r] == ["1"] * 4,
    )
    assert sorted((r["metric"]["job"], r["value"][1]) for r in up) == [
        ("gateway", "1"),
        ("gateway", "1"),
        ("triton", "1"),
        ("triton", "1"),
    ]
    counted = _query(
        cluster,
        'sum(epithre_http_requests_total{path="/v1/embeddings"})',
        lambda r: bool(r) and float(r[0]["value"][1]) == sent,
    )
    assert float(counted[0]["value"][1]) == sent


def _query(cluster: Cluster, query: str, done: Callable[[list], bool]) -> list:
    """The result of an instant query once `done(result)` holds, or the last one after 30 s."""
    data = poll_api(
        cluster.prometheus_url,
        "/api/v1/query",
        lambda d: done(d["result"]),
        deadline_s=30,
        query=query,
    )
    return data["result"] if data else []


def test_a_request_through_haproxy_gets_the_vectors_a_gateway_gives(cluster, alone):
    texts = TEXTS[:2]
    through = _post(httpx.Client(base_url=cluster.url, timeout=30), texts)
    direct = _post(httpx.Client(base_url=cluster.gateways[0].child.base_url, timeout=30), texts)
    vectors = [np.array([d["embedding"] for d in r.json()["data"]]) for r in (through, direct)]
    assert vectors[0].shape == (2, 384)
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
    assert cluster.haproxy.child.server_states() == dict.fromkeys(SERVERS, "UP")


def test_each_triton_runs_one_instance_of_each_tower(cluster):
    for triton in cluster.tritons:
        url = f"http://127.0.0.1:{triton.child.ports.http}/v2/models/{wire.TEXT_ENCODER}/config"
        groups = httpx.get(url, timeout=10).json()["instance_group"]
        assert [group["count"] for group in groups] == [1]


def test_kill_9_of_a_triton_and_sigterm_of_a_gateway_fail_no_request(cluster, alone):
    triton, gateway = cluster.tritons[0], cluster.gateways[0]
    with Load(cluster.url, alone) as load:
        time.sleep(2)
        killed_pid, killed_at = triton.pid, time.monotonic()
        os.kill(killed_pid, signal.SIGKILL)
        triton.wait_replaced(killed_pid, deadline_s=30)
        # The restarted Triton serves again through the gateways' channels, none restarted.
        served_at = _wait_for_traffic(triton.child, since_count=0, until=killed_at + 30)
        os.kill(gateway.pid, signal.SIGTERM)
        time.sleep(gateway.child.drain_s + 3)
    assert served_at - killed_at <= 30
    assert load.failures == []
    assert load.wrong_vectors == 0
    assert len(load.outcomes) > 50
    cluster.wait_serving()


def test_kill_9_of_a_gateway_fails_at_most_the_requests_in_flight_on_it(cluster, alone):
    gateway = cluster.gateways[1]
    with Load(cluster.url, alone) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        os.kill(gateway.pid, signal.SIGKILL)
        time.sleep(5)
    in_flight = [o for o in load.failures if o.started <= killed_at <= o.ended]
    assert load.failures == in_flight
    assert len(in_flight) <= CLIENTS
    assert load.answered_since(killed_at + 0.5) > 20
    assert load.wrong_vectors == 0
    cluster.wait_serving()


def test_sigstop_of_a_triton_delays_no_request_to_its_deadline_and_it_serves_after_sigcont(
    cluster, alone
):
    triton = cluster.tritons[1]
    with Load(cluster.url, alone) as load:
        time.sleep(2)
        stopped_at = time.monotonic()
        os.kill(triton.pid, signal.SIGSTOP)
        try:
            time.sleep(6)
            served_while_stopped = _requests_served(cluster.tritons[0].child)
        finally:
            os.kill(triton.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        before = _requests_served(triton.child)
        served_at = _wait_for_traffic(triton.child, since_count=before, until=resumed_at + 30)
    assert load.failures == []
    assert load.wrong_vectors == 0
    assert max(o.ended - o.started for o in load.outcomes) < DEADLINE_S / 2
    assert load.answered_since(stopped_at + 3) > 0 and served_while_stopped > 0
    assert served_at - resumed_at <= 30


def _admitted(cluster: Cluster) -> float:
    total = 0.0
    for gateway in cluster.gateways:
        for line in httpx.get(gateway.child.metrics_url, timeout=5).text.splitlines():
            if line.startswith("epithre_admitted_requests_total "):
                total += float(line.split()[1])
    return total


def test_overload_through_the_cluster_causes_no_retry_storm(cluster, alone):
    texts = (TEXTS * 3)[:64]
    admitted_before = _admitted(cluster)
    served_before = sum(_requests_served(t.child) for t in cluster.tritons)
    statuses: list[int] = []

    def burst() -> None:
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            for _ in range(3):
                statuses.append(_post(client, texts).status_code)

    threads = [threading.Thread(target=burst) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted = _admitted(cluster) - admitted_before
    served = sum(_requests_served(t.child) for t in cluster.tritons) - served_before
    assert served <= 1.5 * admitted, (served, admitted)
    assert set(statuses) == {200, 429}


def test_stopping_the_cluster_leaves_no_process_and_no_shared_memory(cluster):
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
