"""Slow and greedy clients against a real gateway process: a trickled body gets 408 within its
deadline and loses its connection; past the per-process cap a request gets the API's 503 with
Retry-After; the next normal request is served."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from runner.stack import gateway_process

pytestmark = pytest.mark.integration

BODY_TIMEOUT_S = 4
CAP = 2
BODY = b'{"model": "epithre-embed", "input": "kucing oren"}'


@pytest.fixture(scope="module")
def gateway(stack) -> Iterator[str]:
    with gateway_process(
        stack.triton.grpc_url,
        EPITHRE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        EPITHRE_MIN_BODY_BYTES_PER_S="100",
        EPITHRE_MAX_CONCURRENT_REQUESTS=str(CAP),
    ) as (_, base_url):
        yield base_url


def _open_post(base_url: str) -> socket.socket:
    """A POST whose headers promise a body that has not been sent yet."""
    url = urlsplit(base_url)
    connection = socket.create_connection((url.hostname, url.port), timeout=30)
    connection.sendall(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    )
    return connection


def _wait_in_flight(base_url: str, count: int, deadline_s: float = 5.0) -> None:
    """Until the gateway reports `count` requests in flight besides the scrape itself."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        for line in httpx.get(f"{base_url}/metrics", timeout=5).text.splitlines():
            name, _, value = line.partition(" ")
            if name == "epithre_http_requests_in_flight" and float(value) >= count + 1:
                return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests never in flight together")


def _answer(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_body_sent_at_one_byte_per_second_gets_408_within_the_deadline(gateway):
    connection = _open_post(gateway)
    started = time.monotonic()
    try:
        # One byte a second until just before the deadline, then only listen: a byte sent after
        # the server closed would be answered with a reset that can discard the 408 unread.
        for byte in BODY[: BODY_TIMEOUT_S - 1]:
            connection.sendall(bytes([byte]))
            time.sleep(1.0)
        answer = _answer(connection)  # the server closes the connection after its answer
    finally:
        connection.close()
    elapsed = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in rest.lower()
    assert b'"code":"request_timeout"' in rest
    assert elapsed <= BODY_TIMEOUT_S + 1


def test_past_the_request_cap_a_request_gets_503_json_with_retry_after(gateway):
    held = [_open_post(gateway) for _ in range(CAP)]
    try:
        _wait_in_flight(gateway, CAP)  # both are being served: their bodies are awaited
        refused = httpx.post(f"{gateway}/v1/embeddings", content=BODY, timeout=10)
    finally:
        for connection in held:
            connection.close()
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert refused.json()["error"]["code"] == "gateway_busy"
    served = httpx.post(f"{gateway}/v1/embeddings", content=BODY, timeout=30)
    assert served.status_code == 200
