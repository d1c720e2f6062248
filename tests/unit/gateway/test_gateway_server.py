from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import uvicorn
from gateway_fakes import FakeEmbedder, error_body, serve
from starlette.applications import Starlette

from gateway import Settings, create_app
from gateway.server import DrainingServer


def draining_server(drain_s: float) -> tuple[DrainingServer, Starlette]:
    app = create_app(Settings(), FakeEmbedder())
    return DrainingServer(uvicorn.Config(app), app=app, drain_s=drain_s), app


@pytest.fixture
def restore_sigterm() -> Iterator[None]:
    # Restores the test runner's own SIGTERM handler whatever the test installed.
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def test_draining_turns_readiness_503_while_requests_are_still_served():
    with serve() as (client, _):
        client.app.state.draining = True
        ready = client.get("/health/ready")
        live = client.get("/health/live")
        embedded = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
    assert ready.status_code == 503
    assert ready.json() == error_body(
        "the gateway is shutting down",
        type="service_unavailable_error",
        param=None,
        code="draining",
    )
    assert (live.status_code, embedded.status_code) == (200, 200)


def test_a_new_app_is_not_draining():
    with serve() as (client, _):
        assert client.app.state.draining is False
        assert client.get("/health/ready").status_code == 200


def test_sigterm_marks_draining_then_chains_to_uvicorn(restore_sigterm):
    server, app = draining_server(drain_s=0)
    signal.signal(signal.SIGTERM, server.handle_exit)
    signal.raise_signal(signal.SIGTERM)
    assert (app.state.draining, server.should_exit) == (True, True)


def test_drain_delay_keeps_serving_until_it_passes():
    server, app = draining_server(drain_s=0.05)
    server.handle_exit(signal.SIGTERM, None)
    assert (app.state.draining, server.should_exit) == (True, False)
    deadline = time.monotonic() + 5
    while not server.should_exit and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.should_exit is True


def test_a_second_signal_during_the_delay_stops_at_once():
    server, _ = draining_server(drain_s=60)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit is True
