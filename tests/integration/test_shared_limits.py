"""One rate limit per key across replicas: the two gateways of `running_cluster` count every key's
requests and tokens in the cluster's one Redis, and go on serving, unchecked, while it is stopped.

One cluster serves the module; each test has a key of its own (the limits are the same for all).
"""

from __future__ import annotations

import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from runner.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"
# One request back every 15 s: no test here lasts long enough to see one come back.
RPM = 4
TPM = 100
KEYS = ("k-count", "k-tokens", "k-outage", "k-restart")
SHORT = "a"  # 3 tokens
LONG = " ".join(["cat"] * 147)  # 149 tokens: 49 over the budget of 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("cluster"),
        EPITHRE_API_KEYS=",".join(KEYS),
        EPITHRE_RATE_LIMIT_RPM=str(RPM),
        EPITHRE_RATE_LIMIT_TPM=str(TPM),
    ) as running:
        yield running


def _post(url: str, key: str, text: str = SHORT) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/embeddings",
        json={"model": MODEL, "input": text},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _limit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


def _metric(cluster: Cluster, gateway: int, name: str) -> float:
    text = httpx.get(cluster.gateways[gateway].child.metrics_url, timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def _log(cluster: Cluster, gateway: int) -> str:
    path = cluster.gateways[gateway].child.log_path
    assert path is not None
    return path.read_text()


def test_a_key_gets_its_requests_per_minute_once_across_both_gateways(cluster: Cluster) -> None:
    gateways = [g.child.base_url for g in cluster.gateways]
    # Alternately at each gateway directly, then once through HAProxy.
    responses = [_post(gateways[i % 2], "k-count") for i in range(2 * RPM)]
    through_haproxy = _post(cluster.url, "k-count")
    assert [r.status_code for r in responses] == [200] * RPM + [429] * RPM
    # One budget: each answer, at either gateway, left one request fewer.
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses[:RPM]] == [
        str(RPM - n) for n in range(1, RPM + 1)
    ]
    for refused in [*responses[RPM:], through_haproxy]:
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        # Four a minute: the next one in 15 s.
        assert refused.headers["retry-after"] == "15"


def test_a_key_over_its_token_budget_is_refused_on_its_next_request_at_either_gateway(
    cluster: Cluster,
) -> None:
    first, second = (g.child.base_url for g in cluster.gateways)
    overdrawn = _post(first, "k-tokens", LONG)
    at_the_other = _post(second, "k-tokens")
    at_the_same = _post(first, "k-tokens")
    # The request that overdraws is answered: its cost was not known before.
    assert overdrawn.status_code == 200
    assert overdrawn.json()["usage"]["total_tokens"] == 149
    assert overdrawn.headers["x-ratelimit-remaining-tokens"] == "0"
    # 100 - 149 = -49 tokens; one whole token back at 100 a minute takes 50 * 0.6 = 30 s.
    for refused in (at_the_other, at_the_same):
        assert refused.status_code == 429
        assert refused.json()["error"]["message"] == (
            "rate limit reached for tokens per minute on this API key; retry after 30 s"
        )
        assert refused.headers["retry-after"] == "30"


@dataclass
class Outcome:
    started: float
    ended: float
    status: int  # 0: no answer
    limited: bool  # it carried x-ratelimit-* headers: the storage answered


@dataclass
class Load:
    """THREADS clients posting through HAProxy with one key, one request at a time, until exit."""

    url: str
    key: str
    threads: int = 3
    outcomes: list[Outcome] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _running: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._running = [threading.Thread(target=self._client) for _ in range(self.threads)]
        for thread in self._running:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._running:
            thread.join()

    def _client(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                response = _post(self.url, self.key)
            except httpx.HTTPError:
                self.outcomes.append(Outcome(started, time.monotonic(), status=0, limited=False))
                continue
            limited = bool(_limit_headers(response))
            self.outcomes.append(Outcome(started, time.monotonic(), response.status_code, limited))

    def within(self, start: float, end: float) -> list[tuple[int, bool]]:
        """Status and headers of the requests sent and answered between `start` and `end`."""
        return [(o.status, o.limited) for o in self.outcomes if start <= o.started < o.ended < end]


def test_redis_stopped_under_load_requests_are_served_unchecked_then_the_limit_holds_again(
    cluster: Cluster,
) -> None:
    spent = [_post(cluster.url, "k-outage").status_code for _ in range(RPM + 1)]
    assert spent == [200] * RPM + [429]
    redis = cluster.redis.pid
    with Load(cluster.url, "k-outage") as load:
        time.sleep(1.0)
        stopped = time.monotonic()
        os.kill(redis, signal.SIGSTOP)
        try:
            time.sleep(2.0)
            down = [_metric(cluster, i, "epithre_rate_limit_storage_up") for i in (0, 1)]
            errors = [
                _metric(cluster, i, "epithre_rate_limit_storage_errors_total") for i in (0, 1)
            ]
        finally:
            continued = time.monotonic()
            os.kill(redis, signal.SIGCONT)
        # Each gateway tries it again within a second of the last failure.
        time.sleep(1.5)
        back = time.monotonic()
        time.sleep(1.0)
    before = load.within(0, stopped)
    # A request that met the stop waited the storage's timeout (250 ms), then was served.
    during = load.within(stopped + 0.3, continued)
    after = load.within(back, math.inf)
    assert before and set(before) == {(429, True)}
    # Over its budget, yet served: nothing is known while Redis does not answer.
    assert during and set(during) == {(200, False)}
    assert after and set(after) == {(429, True)}
    assert down == [0.0, 0.0]
    assert all(count >= 1 for count in errors)
    assert [_metric(cluster, i, "epithre_rate_limit_storage_up") for i in (0, 1)] == [1.0, 1.0]
    address = cluster.redis.child.url
    for i in (0, 1):
        log = _log(cluster, i)
        # Once per outage, not once per request.
        assert log.count(f"rate-limit storage {address} does not answer") == 1
        assert log.count(f"rate-limit storage {address} answers again: limits hold") == 1


def test_a_restarted_redis_starts_every_budget_full_and_both_gateways_share_it_again(
    cluster: Cluster,
) -> None:
    spent = [_post(cluster.url, "k-restart").status_code for _ in range(RPM + 1)]
    killed = cluster.redis.pid
    os.kill(killed, signal.SIGKILL)
    cluster.redis.wait_replaced(killed, deadline_s=30)
    gateways = [g.child.base_url for g in cluster.gateways]
    after = [_post(gateways[i % 2], "k-restart").status_code for i in range(2 * RPM)]
    assert spent == [200] * RPM + [429]
    # Nothing on disk: the budget is full again, and still one for both gateways.
    assert after == [200] * RPM + [429] * RPM
