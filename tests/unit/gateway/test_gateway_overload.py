"""Overload and failure at the edge, through the app: 429 and 503 with Retry-After, readiness,
and metrics kept off the public port."""

from __future__ import annotations

import time

import httpx
from gateway_fakes import FakeEmbedder, error_body, serve, triton_failure

from gateway.admission import MIN_ANSWERS
from gateway.errors import BackendTimeout, BackendUnavailable
from runner.triton import free_port

BODY = {"model": "epithre-embed", "input": ["a"]}


def metric(client, line_start: str) -> float:
    lines = client.get("/metrics").text.splitlines()
    return float(next(line for line in lines if line.startswith(line_start)).split()[-1])


def test_a_full_triton_queue_counts_as_backend_busy_and_never_opens_the_circuit():
    busy = triton_failure("StatusCode.UNAVAILABLE", "Request timeout expired")
    with serve(FakeEmbedder(error=busy), breaker_failures=1) as (client, embedder):
        answers = [client.post("/v1/embeddings", json=BODY) for _ in range(3)]
        assert [r.status_code for r in answers] == [429, 429, 429]
        assert all(1 <= int(r.headers["retry-after"]) <= 120 for r in answers)
        assert len(embedder.calls) == 3  # every one reached Triton: the circuit stayed closed
        assert metric(client, 'epithre_rejected_requests_total{reason="backend_busy"}') == 3


def test_consecutive_transport_failures_open_the_circuit_and_then_503_comes_at_once():
    down = triton_failure("StatusCode.UNAVAILABLE", "Socket closed")
    with serve(FakeEmbedder(error=down, probe_error=down), breaker_probe_s=60) as (client, e):
        first = [client.post("/v1/embeddings", json=BODY) for _ in range(2)]
        started = time.monotonic()
        refused = client.post("/v1/embeddings", json=BODY)
        elapsed = time.monotonic() - started
        assert [r.status_code for r in first] == [503, 503]
        assert all(r.headers["retry-after"] == "1" for r in first)
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "60")
        assert elapsed < 1.0
        assert len(e.calls) == 2  # the third never reached the embedder
        assert metric(client, "epithre_circuit_open") == 1.0
        assert metric(client, 'epithre_rejected_requests_total{reason="circuit_open"}') == 1
        assert client.get("/health/ready").status_code == 503


def test_every_503_carries_retry_after():
    with serve(FakeEmbedder(probe_error=BackendUnavailable("x"))) as (client, _):
        ready = client.get("/health/ready")
    assert (ready.status_code, ready.headers["retry-after"]) == (503, "1")


def test_readiness_stays_200_while_answers_keep_coming_without_probing():
    embedder = FakeEmbedder(probe_error=BackendTimeout("the probe would queue behind the work"))
    with serve(embedder) as (client, _):
        assert client.post("/v1/embeddings", json=BODY).status_code == 200
        assert client.get("/health/ready").status_code == 200


def test_readiness_stays_200_without_probing_while_admitted_work_is_in_flight():
    embedder = FakeEmbedder(probe_error=BackendTimeout("the probe would queue behind the work"))
    with serve(embedder) as (client, _):
        service = client.app.state.service
        ticket = service.admission.admit(b"slow", cost=100, deadline_s=30)
        busy = client.get("/health/ready").status_code
        ticket.release(done=False)
        idle = client.get("/health/ready").status_code
    assert (busy, idle) == (200, 503)


def test_readiness_counts_a_busy_answer_to_its_probe_as_alive():
    busy = triton_failure("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")
    with serve(FakeEmbedder(probe_error=busy)) as (client, _):
        assert client.get("/health/ready").status_code == 200


def test_a_probe_that_times_out_turns_readiness_503_and_opens_the_circuit():
    embedder = FakeEmbedder(probe_error=BackendTimeout("no answer"))
    with serve(embedder, breaker_probe_s=60) as (client, _):
        assert client.get("/health/ready").status_code == 503
        refused = client.post("/v1/embeddings", json=BODY)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "60")
    assert refused.json() == error_body(
        "the model backend is unavailable; retrying it",
        type="service_unavailable_error",
        param=None,
        code="backend_unavailable",
    )
    assert embedder.calls == []


def test_admission_refuses_at_once_what_the_measured_rate_cannot_finish_in_time():
    clock = [0.0]
    with serve(FakeEmbedder(), clock=lambda: clock[0], request_timeout_s=5) as (client, _):
        service = client.app.state.service
        # Triton was seen to finish 100 tokens per busy second; 380 tokens are in flight.
        for _ in range(MIN_ANSWERS):
            warm = service.admission.admit(b"warm-up", cost=100, deadline_s=5)
            clock[0] += 1.0
            warm.release(done=True)
        clock[0] += 60.0  # the warm-up caller is forgotten; the rate stands
        service.admission.admit(b"other", cost=380, deadline_s=5)
        long = {"model": "epithre-embed", "input": ["kata " * 200]}  # ~252 tokens: 6.3 s of wait
        refused = client.post("/v1/embeddings", json=long)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "overloaded"
        assert metric(client, 'epithre_rejected_requests_total{reason="wait"}') == 1
        assert metric(client, "epithre_admission_wait_seconds") == 3.8


def test_with_a_metrics_port_metrics_leave_the_public_port_for_their_own():
    port = free_port()
    with serve(metrics_port=port) as (client, _):
        assert client.get("/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert "epithre_admission_wait_seconds" in scraped.text
