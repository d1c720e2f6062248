"""The rate limiter over both storages: the same budgets in memory and in a real redis-server, and
what a Redis that does not answer costs (nothing but the limits, for as long as it is down)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from gateway_fakes import FakeClock, serve

from gateway.errors import RateLimited
from gateway.ratelimit import MemoryStorage, RateLimiter, Storage
from gateway.ratelimit.redis_storage import KEY_PREFIX, RETRY_S, TIMEOUT_S, RedisStorage
from runner.cluster import free_ports
from runner.redis import BINARY, LocalRedis
from runner.supervisor import Supervisor

needs_redis = pytest.mark.skipif(
    not Path(BINARY).exists(),
    reason="redis-server is missing (Debian package `redis-server`; `make install` installs it)",
)
T = TypeVar("T")
KEY = hashlib.sha256(b"k1").digest()
OTHER = hashlib.sha256(b"k2").digest()


@pytest.fixture(scope="module")
def local_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    if not Path(BINARY).exists():
        pytest.skip("redis-server is missing (Debian package `redis-server`)")
    supervisor = Supervisor(
        LocalRedis(port=free_ports(1)[0], workdir=tmp_path_factory.mktemp("redis")), name="redis"
    )
    supervisor.start()
    yield supervisor.child
    supervisor.stop()


@pytest.fixture
def redis_url(local_redis: LocalRedis) -> Iterator[str]:
    """The server emptied for each test."""
    with redis.Redis.from_url(local_redis.url) as client:
        client.flushdb()
    yield local_redis.url


@pytest.fixture(params=["memory", "redis"])
def open_storage(request: pytest.FixtureRequest) -> Callable[[], Storage]:
    """Opens the storage in the running event loop (a Redis client belongs to it)."""
    if request.param == "memory":
        return lambda: MemoryStorage(clock=FakeClock())
    url = request.getfixturevalue("redis_url")
    return lambda: RedisStorage(url)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def limiter(storage: Storage, *, rpm: int = 0, tpm: int = 0) -> RateLimiter:
    return RateLimiter(requests_per_minute=rpm, tokens_per_minute=tpm, storage=storage)


def start_ready(server: LocalRedis) -> None:
    server.start()
    deadline = time.monotonic() + 10
    while not server.ready():
        assert time.monotonic() < deadline, "redis-server not ready in 10 s"
        time.sleep(0.02)


async def refusal(admitting: Awaitable[dict[str, str]]) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await admitting
    return refused.value


def test_a_key_gets_its_requests_per_minute_then_429_with_the_wait_for_one_more(open_storage):
    async def scenario() -> tuple[list[dict[str, str]], RateLimited, dict[str, str]]:
        limits = limiter(open_storage(), rpm=2)
        admitted = [await limits.admit(KEY) for _ in range(2)]
        refused = await refusal(limits.admit(KEY))
        other = await limits.admit(OTHER)
        await limits.close()
        return admitted, refused, other

    admitted, refused, other = run(scenario)
    assert [a["x-ratelimit-remaining-requests"] for a in admitted] == ["1", "0"]
    # Two a minute refill one every 30 s, and the budget was just emptied.
    assert refused.retry_after == 30
    assert refused.message == (
        "rate limit reached for requests per minute on this API key; retry after 30 s"
    )
    assert refused.headers()["x-ratelimit-remaining-requests"] == "0"
    assert other == {"x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1"}


def test_tokens_are_charged_after_the_answer_below_zero_and_refuse_the_next_request(
    open_storage,
):
    async def scenario() -> tuple[dict[str, str], dict[str, str], RateLimited]:
        limits = limiter(open_storage(), tpm=5)
        admitted = await limits.admit(KEY)
        charged = await limits.charge(KEY, tokens=10)
        refused = await refusal(limits.admit(KEY))
        await limits.close()
        return admitted, charged, refused

    admitted, charged, refused = run(scenario)
    assert admitted == {"x-ratelimit-limit-tokens": "5", "x-ratelimit-remaining-tokens": "5"}
    assert charged == {"x-ratelimit-limit-tokens": "5", "x-ratelimit-remaining-tokens": "0"}
    # 5 - 10 = -5 tokens; one whole token back at 5 a minute takes 6 / (5 / 60) = 72 s.
    assert refused.retry_after == 72
    assert "tokens per minute" in refused.message


def test_a_refused_request_takes_nothing_from_the_budget_that_had_room(open_storage):
    async def scenario() -> tuple[RateLimited, dict[str, str]]:
        limits = limiter(open_storage(), rpm=3, tpm=5)
        await limits.admit(KEY)
        await limits.charge(KEY, tokens=10)
        refused = await refusal(limits.admit(KEY))
        after = await limits.charge(KEY, tokens=0)
        await limits.close()
        return refused, after

    refused, after = run(scenario)
    assert refused.headers()["x-ratelimit-remaining-requests"] == "2"
    assert after["x-ratelimit-remaining-requests"] == "2"


def test_limits_off_never_call_the_storage():
    class Unreachable(MemoryStorage):
        async def spend(self, *args: object, **kwargs: object):  # type: ignore[override]
            raise AssertionError("called")

    async def scenario() -> list[dict[str, str]]:
        limits = limiter(Unreachable(clock=FakeClock()))
        return [await limits.admit(KEY), await limits.charge(KEY, tokens=9)]

    assert run(scenario) == [{}, {}]


@needs_redis
def test_replicas_sharing_one_redis_share_one_budget_per_key(redis_url: str):
    async def scenario() -> tuple[list[str], RateLimited, RateLimited]:
        one, two = (limiter(RedisStorage(redis_url), rpm=3) for _ in range(2))
        remaining = [
            (await replica.admit(KEY))["x-ratelimit-remaining-requests"]
            for replica in (one, two, one)
        ]
        refusals = await refusal(two.admit(KEY)), await refusal(one.admit(KEY))
        await one.close()
        await two.close()
        return remaining, *refusals

    remaining, at_two, at_one = run(scenario)
    assert remaining == ["2", "1", "0"]
    assert at_two.retry_after == at_one.retry_after == 20


@needs_redis
def test_the_budget_refills_continuously_on_the_servers_clock_up_to_the_limit(redis_url: str):
    async def scenario() -> tuple[int, int, int]:
        # 100 tokens a second.
        limits = limiter(RedisStorage(redis_url), tpm=6000)
        emptied = await limits.charge(KEY, tokens=6000)
        await asyncio.sleep(0.3)
        refilled = await limits.charge(KEY, tokens=0)
        await limits.charge(OTHER, tokens=50)
        await asyncio.sleep(0.6)
        capped = await limits.charge(OTHER, tokens=0)
        await limits.close()
        return tuple(  # type: ignore[return-value]
            int(h["x-ratelimit-remaining-tokens"]) for h in (emptied, refilled, capped)
        )

    emptied, refilled, capped = run(scenario)
    assert emptied == 0
    assert 30 <= refilled <= 40
    # 60 back in 0.6 s, but never more than the limit.
    assert capped == 6000


@needs_redis
def test_a_key_is_stored_by_its_digest_and_expires_once_its_budget_would_be_full(
    redis_url: str,
):
    async def scenario() -> None:
        limits = limiter(RedisStorage(redis_url), rpm=60)
        await limits.admit(KEY)
        await limits.close()

    run(scenario)
    with redis.Redis.from_url(redis_url) as client:
        keys = client.keys("*")
        ttl_ms = client.pttl(keys[0])
    assert keys == [(KEY_PREFIX + KEY.hex()).encode()]
    # One request back at one a second: full in 1 s, gone a second later.
    assert 1500 < ttl_ms <= 2000


@needs_redis
def test_a_stopped_redis_costs_a_request_at_most_the_timeout_and_admits_it_unchecked(
    local_redis: LocalRedis, redis_url: str, caplog: pytest.LogCaptureFixture
):
    errors: list[None] = []

    async def scenario() -> tuple[float, dict[str, str], float, dict[str, str], bool]:
        storage = RedisStorage(redis_url, on_error=lambda: errors.append(None))
        limits = limiter(storage, rpm=1)
        await limits.admit(KEY)
        assert local_redis.process is not None
        os.kill(local_redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            first = await limits.admit(KEY)
            first_s = time.monotonic() - started
            started = time.monotonic()
            second = await limits.admit(KEY)
            second_s = time.monotonic() - started
        finally:
            os.kill(local_redis.process.pid, signal.SIGCONT)
        await limits.close()
        return first_s, first, second_s, second, storage.up

    first_s, first, second_s, second, up = run(scenario)
    # Over its budget of one, yet admitted: without an answer nothing is known.
    assert (first, second, up) == ({}, {}, False)
    assert TIMEOUT_S <= first_s < TIMEOUT_S + 0.2
    # The next ones do not try again within RETRY_S: no wait, no error.
    assert second_s < 0.05
    assert len(errors) == 1
    assert f"{redis_url} does not answer (no answer in 0.25 s)" in caplog.text


@needs_redis
def test_redis_down_is_logged_once_and_its_return_once_and_then_the_limit_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    clock = FakeClock()
    server = LocalRedis(port=free_ports(1)[0], workdir=tmp_path)
    errors: list[None] = []

    async def scenario() -> tuple[list[dict[str, str]], int, dict[str, str], RateLimited]:
        storage = RedisStorage(server.url, on_error=lambda: errors.append(None), clock=clock)
        limits = limiter(storage, rpm=1)
        unchecked = [await limits.admit(KEY) for _ in range(3)]
        clock.now += RETRY_S
        await limits.admit(KEY)  # tries again, in vain
        errors_while_down = len(errors)
        start_ready(server)
        clock.now += RETRY_S
        back = await limits.admit(KEY)
        refused = await refusal(limits.admit(KEY))
        await limits.close()
        return unchecked, errors_while_down, back, refused

    caplog.set_level(logging.INFO, logger="gateway")
    try:
        unchecked, errors_while_down, back, refused = run(scenario)
    finally:
        server.stop()
    assert unchecked == [{}, {}, {}]
    assert errors_while_down == 2
    assert back == {"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0"}
    assert refused.retry_after == 60
    notes = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith("rate-limit storage")
    ]
    assert [level for level, _ in notes] == ["WARNING", "INFO"]
    down, back_again = (message for _, message in notes)
    assert down.startswith(f"rate-limit storage {server.url} does not answer (")
    assert down.endswith(
        "): requests are admitted without rate limits until it does; tried again every 1 s"
    )
    assert back_again == f"rate-limit storage {server.url} answers again: limits hold"


@needs_redis
def test_a_restarted_redis_is_used_again_at_once_with_full_budgets(
    tmp_path: Path,
):
    server = LocalRedis(port=free_ports(1)[0], workdir=tmp_path)
    errors: list[None] = []

    async def scenario() -> tuple[RateLimited, dict[str, str]]:
        limits = limiter(RedisStorage(server.url, on_error=lambda: errors.append(None)), rpm=1)
        await limits.admit(KEY)
        refused = await refusal(limits.admit(KEY))
        # Its connection closed and the script forgotten: the same call opens a new one and
        # loads the script again.
        server.stop()
        start_ready(server)
        after = await limits.admit(KEY)
        await limits.close()
        return refused, after

    start_ready(server)
    try:
        refused, after = run(scenario)
    finally:
        server.stop()
    assert refused.retry_after == 60
    # Nothing on disk: the restarted server starts every key's budget full.
    assert after == {"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0"}
    assert errors == []


def test_with_redis_unreachable_requests_are_served_without_headers_and_metrics_say_so():
    unreachable = f"redis://127.0.0.1:{free_ports(1)[0]}/0"
    with serve(rate_limit_rpm=1, rate_limit_storage=unreachable) as (client, _):
        responses = [
            client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
            for _ in range(3)
        ]
        metrics = client.get("/metrics").text
    assert [r.status_code for r in responses] == [200] * 3
    assert [k for r in responses for k in r.headers if k.startswith("x-ratelimit-")] == []
    assert "epithre_rate_limit_storage_up 0.0" in metrics.splitlines()
    # The first call failed; the others, within a second, did not try.
    assert "epithre_rate_limit_storage_errors_total 1.0" in metrics.splitlines()


def test_in_memory_the_storage_is_always_up():
    with serve(rate_limit_rpm=1, clock=FakeClock()) as (client, _):
        metrics = client.get("/metrics").text.splitlines()
    assert "epithre_rate_limit_storage_up 1.0" in metrics
    assert "epithre_rate_limit_storage_errors_total 0.0" in metrics
