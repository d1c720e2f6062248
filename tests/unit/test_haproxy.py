"""deploy/haproxy/haproxy.cfg keeps its promises: HAProxy accepts it, its timeouts fit the
gateway's, and in front of two fake gateways (in-process HTTP servers) it retries what a
gateway dropped, takes a gateway out while its readiness answers 503, and stops softly."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.settings import Settings
from gateway.triton import PROBE_TIMEOUT_S
from runner.haproxy import CONFIG, SERVERS, LocalHaproxy, check_config, environment
from runner.triton import free_port

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
    reason="haproxy is missing (Debian package `haproxy`; `make install` installs it)",
)
# Request bodies HAProxy holds whole, and so retries, and one it cannot hold.
BUFFERED = b"x" * 300_000
STREAMED = b"x" * 600_000


def _variables(tmp_path: Path) -> dict[str, str]:
    return environment(
        bind="127.0.0.1:8000",
        gateways=["127.0.0.1:8101", "127.0.0.1:8102"],
        stats_socket=tmp_path / "haproxy.sock",
    )


def _timeouts_s() -> dict[str, float]:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    timeouts = re.findall(r"^\s*timeout ([\w-]+) (\d+)(ms|s|m)$", CONFIG.read_text(), re.M)
    return {name: int(value) * units[unit] for name, value, unit in timeouts}


@needs_haproxy
def test_haproxy_accepts_the_config_with_the_runners_variables(tmp_path: Path) -> None:
    result = check_config(_variables(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Configuration file is valid" in result.stdout


def test_the_config_reads_exactly_the_variables_the_runner_sets(tmp_path: Path) -> None:
    read = set(re.findall(r"\$\{(\w+)\}", CONFIG.read_text()))
    assert read == set(_variables(tmp_path))


def test_the_runner_refuses_another_number_of_gateways_than_the_config_has(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="names 2 gateways, not 3"):
        environment(bind="127.0.0.1:8000", gateways=["a:1"] * 3, stats_socket=tmp_path / "s")


def test_timeouts_fit_the_gateways_settings() -> None:
    timeouts, settings = _timeouts_s(), Settings()
    # The gateway answers 504 at its deadline before HAProxy gives up on it.
    assert timeouts["server"] > settings.request_timeout_s
    # HAProxy's clients never hold a connection the gateway is closing.
    assert timeouts["http-keep-alive"] < settings.keep_alive_s
    assert timeouts["http-request"] <= settings.body_timeout_s
    # A slow readiness probe answers before the check gives up.
    assert timeouts["check"] > PROBE_TIMEOUT_S


class FakeGateway(ThreadingHTTPServer):
    """Answers POST with its name, or (`drop`) closes the connection without a byte; its
    /health/ready answers `ready_status`; a POST to /slow takes a second."""

    daemon_threads = True

    def __init__(self, name: str, *, drop: bool = False) -> None:
        self.name = name
        self.drop = drop
        self.ready_status = 200
        self.posts = 0
        super().__init__(("127.0.0.1", 0), _FakeHandler)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _FakeHandler(BaseHTTPRequestHandler):
    server: FakeGateway
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(self.server.ready_status, b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        if self.server.drop:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(1)
        self._answer(200, self.server.name.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def load_balance(tmp_path: Path) -> Iterator[Callable[..., LocalHaproxy]]:
    """Starts HAProxy in front of two fake gateways; stops everything at the end."""
    started: list[tuple[LocalHaproxy, list[FakeGateway]]] = []

    def load_balance(*gateways: FakeGateway) -> LocalHaproxy:
        for gateway in gateways:
            threading.Thread(target=gateway.serve_forever, daemon=True).start()
        haproxy = LocalHaproxy(
            port=free_port(), gateways=[g.address for g in gateways], workdir=tmp_path
        )
        started.append((haproxy, list(gateways)))
        haproxy.start()
        _wait_for(haproxy.ready)
        return haproxy

    yield load_balance
    for haproxy, gateways in started:
        haproxy.stop()
        for gateway in gateways:
            gateway.shutdown()
            gateway.server_close()


def _wait_for(condition: Callable[[], bool], *, deadline_s: float = 10) -> float:
    """Seconds until `condition` held; fails at the deadline."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < deadline_s, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - start


@needs_haproxy
def test_a_post_its_gateway_dropped_unanswered_is_answered_by_the_other(load_balance) -> None:
    dropping, serving = FakeGateway("dropping", drop=True), FakeGateway("serving")
    haproxy = load_balance(dropping, serving)
    with httpx.Client(base_url=haproxy.url, timeout=10) as client:
        answers = [client.post("/v1/embeddings", content=BUFFERED) for _ in range(4)]
    assert [(a.status_code, a.text) for a in answers] == [(200, "serving")] * 4
    assert dropping.posts >= 1  # leastconn sent it some: they were retried


@needs_haproxy
def test_a_body_larger_than_the_buffer_is_not_retried(load_balance) -> None:
    dropping, serving = FakeGateway("dropping", drop=True), FakeGateway("serving")
    haproxy = load_balance(dropping, serving)
    outcomes = []
    with httpx.Client(base_url=haproxy.url, timeout=10) as client:
        for _ in range(4):
            try:
                outcomes.append(client.post("/v1/embeddings", content=STREAMED).status_code)
            except httpx.TransportError:
                outcomes.append("disconnected")  # HAProxy gave up while the body streamed
    failed = [outcome for outcome in outcomes if outcome != 200]
    # Each request the dropping gateway got failed: none was sent again.
    assert failed and len(failed) == dropping.posts


@needs_haproxy
def test_a_gateway_answering_503_on_readiness_leaves_the_rotation_and_comes_back(
    load_balance,
) -> None:
    draining, serving = FakeGateway("draining"), FakeGateway("serving")
    haproxy = load_balance(draining, serving)
    # HAProxy starts its servers in a transitional "UP 1/2" until their first check passes.
    _wait_for(lambda: haproxy.server_states() == dict.fromkeys(SERVERS, "UP"))
    draining.ready_status = 503
    # Two failed checks 1 s apart.
    assert _wait_for(lambda: haproxy.server_states()["gateway-1"] == "DOWN") < 3.5
    posts = draining.posts
    with httpx.Client(base_url=haproxy.url, timeout=10) as client:
        answers = {client.post("/v1/embeddings", content=b"{}").text for _ in range(6)}
    assert answers == {"serving"}
    assert draining.posts == posts
    draining.ready_status = 200
    assert _wait_for(lambda: haproxy.server_states()["gateway-1"] == "UP") < 3.5


@needs_haproxy
def test_stop_lets_the_request_in_flight_finish(load_balance) -> None:
    haproxy = load_balance(FakeGateway("one"), FakeGateway("two"))
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{haproxy.url}/slow", content=b"{}", timeout=10))
    )
    request.start()
    time.sleep(0.3)
    haproxy.stop()
    request.join()
    assert [a.status_code for a in answers] == [200]
    assert haproxy.process is not None and haproxy.process.returncode == 0
    assert not haproxy.ready()
