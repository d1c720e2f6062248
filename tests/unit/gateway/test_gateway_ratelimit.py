from __future__ import annotations

import hashlib

import pytest
from gateway_fakes import FakeClock, error_body, fake_tokens, serve

from gateway import Settings
from gateway.ratelimit import MemoryStorage
from gateway.settings import SettingsError

SHORT = {"model": "epithre-embed", "input": "a"}  # fake_tokens("a") == 3
TEN_TOKENS = {"model": "epithre-embed", "input": "a b c d e f g h"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def limit_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


def test_a_key_over_its_requests_per_minute_gets_429_while_another_key_is_served():
    with serve(api_keys=("k1", "k2"), rate_limit_rpm=2, clock=FakeClock()) as (client, _):
        statuses = [
            client.post("/v1/embeddings", json=SHORT, headers=bearer("k1")).status_code
            for _ in range(2)
        ]
        refused = client.post("/v1/embeddings", json=SHORT, headers=bearer("k1"))
        other = client.post("/v1/embeddings", json=SHORT, headers=bearer("k2"))
    assert statuses == [200, 200]
    assert refused.status_code == 429
    # Two a minute refill one every 30 s, and the bucket was just emptied.
    assert refused.headers["retry-after"] == "30"
    assert refused.json() == error_body(
        "rate limit reached for requests per minute on this API key; retry after 30 s",
        type="rate_limit_error",
        param=None,
        code="rate_limit_exceeded",
    )
    assert other.status_code == 200
    assert limit_headers(other) == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
    }


def test_the_request_budget_refills_after_the_retry_after():
    clock = FakeClock()
    with serve(rate_limit_rpm=2, clock=clock) as (client, _):
        for _ in range(2):
            client.post("/v1/embeddings", json=SHORT)
        clock.now += 29
        early = client.post("/v1/embeddings", json=SHORT)
        clock.now += 1
        on_time = client.post("/v1/embeddings", json=SHORT)
        clock.now += 60
        after_a_minute = [client.post("/v1/embeddings", json=SHORT).status_code for _ in range(3)]
    assert (early.status_code, early.headers["retry-after"]) == (429, "1")
    assert on_time.status_code == 200
    # A full minute refills the whole budget, never more than it.
    assert after_a_minute == [200, 200, 429]


def test_tokens_are_charged_after_the_answer_and_refuse_the_next_request():
    clock = FakeClock()
    with serve(rate_limit_tpm=5, clock=clock) as (client, embedder):
        current = client.post("/v1/embeddings", json=TEN_TOKENS)
        following = client.post("/v1/embeddings", json=SHORT)
        clock.now += 72
        refilled = client.post("/v1/embeddings", json=SHORT)
    # The request that overdraws the budget is still answered; its cost was unknown before.
    assert current.status_code == 200
    assert current.json()["usage"]["total_tokens"] == fake_tokens("a b c d e f g h") == 10
    assert limit_headers(current) == {
        "x-ratelimit-limit-tokens": "5",
        "x-ratelimit-remaining-tokens": "0",
    }
    # 5 - 10 = -5 tokens; one whole token back at 5 a minute takes 6 / (5 / 60) = 72 s.
    assert following.status_code == 429
    assert following.headers["retry-after"] == "72"
    assert following.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(embedder.calls) == 2
    assert refilled.status_code == 200


def test_headers_show_the_remaining_budget_going_down():
    limits = {"rate_limit_rpm": 3, "rate_limit_tpm": 100}
    with serve(api_keys=("k1",), clock=FakeClock(), **limits) as (client, _):
        responses = [
            client.post("/v1/embeddings", json=SHORT, headers=bearer("k1")) for _ in range(4)
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [limit_headers(r) for r in responses] == [
        {
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": str(requests),
            "x-ratelimit-limit-tokens": "100",
            "x-ratelimit-remaining-tokens": str(tokens),
        }
        for requests, tokens in [(2, 97), (1, 94), (0, 91), (0, 91)]
    ]


def test_limits_off_means_no_rate_limit_headers():
    with serve(clock=FakeClock()) as (client, _):
        responses = [client.post("/v1/embeddings", json=SHORT) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert [limit_headers(r) for r in responses] == [{}] * 5


def test_without_api_keys_all_clients_share_one_anonymous_budget():
    with serve(rate_limit_rpm=1, clock=FakeClock()) as (client, _):
        first = client.post("/v1/embeddings", json=SHORT, headers=bearer("anything"))
        second = client.post("/v1/embeddings", json=SHORT, headers=bearer("something else"))
    assert (first.status_code, second.status_code) == (200, 429)


def test_429_comes_before_any_body_byte_is_read():
    read: list[bytes] = []

    def body():
        read.append(b"x")
        yield b'{"model": "epithre-embed", "input": "a"}'

    with serve(rate_limit_rpm=1, clock=FakeClock()) as (client, embedder):
        client.post("/v1/embeddings", json=SHORT)
        response = client.post(
            "/v1/embeddings", content=body(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 429
    assert read == [] and len(embedder.calls) == 1


def test_budgets_are_kept_by_the_key_digest_never_the_raw_key():
    with serve(api_keys=("secret-key",), rate_limit_rpm=5, clock=FakeClock()) as (client, _):
        client.post("/v1/embeddings", json=SHORT, headers=bearer("secret-key"))
        storage: MemoryStorage = client.app.state.limiter.storage
    assert list(storage._keys) == [hashlib.sha256(b"secret-key").digest()]


@pytest.mark.parametrize("raw", ["-1", "x", "1.5"])
def test_a_negative_or_non_integer_limit_is_refused_at_start(raw):
    with pytest.raises(SettingsError, match="EPITHRE_RATE_LIMIT_TPM"):
        Settings.from_env({"EPITHRE_RATE_LIMIT_TPM": raw})


def test_limits_are_read_from_the_environment_and_default_to_off():
    settings = Settings.from_env({"EPITHRE_RATE_LIMIT_RPM": "60"})
    assert (settings.rate_limit_rpm, settings.rate_limit_tpm) == (60, 0)


def test_limits_are_counted_in_memory_unless_a_redis_url_is_given():
    assert Settings.from_env({}).rate_limit_storage == "memory://"
    shared = Settings.from_env({"EPITHRE_RATE_LIMIT_STORAGE": "redis://redis:6379/0"})
    assert shared.rate_limit_storage == "redis://redis:6379/0"


@pytest.mark.parametrize("raw", ["memory", "http://redis:6379", "redis://redis:port/0"])
def test_a_storage_that_is_neither_memory_nor_a_redis_url_is_refused_at_start(raw):
    with pytest.raises(SettingsError, match="EPITHRE_RATE_LIMIT_STORAGE"):
        Settings.from_env({"EPITHRE_RATE_LIMIT_STORAGE": raw})
