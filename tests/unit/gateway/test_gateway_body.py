from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
from gateway_fakes import error_body, serve
from starlette.requests import Request

from gateway.body import BodyLimits, read_json
from gateway.errors import RequestTimeout

VALID = orjson.dumps({"model": "epithre-embed", "input": "a"})
CAP = 1_000


def padded(size: int) -> bytes:
    """A valid request body of exactly `size` bytes (whitespace is legal JSON)."""
    return VALID + b" " * (size - len(VALID))


def chunks(body: bytes, *, size: int = 100, read: list[int] | None = None) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        if read is not None:
            read.append(start)
        yield body[start : start + size]


def post(client, content, headers: dict[str, str] | None = None):
    return client.post(
        "/v1/embeddings",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
    )


def test_body_at_the_cap_is_accepted():
    with serve(max_body_bytes=CAP) as (client, _):
        assert post(client, padded(CAP)).status_code == 200


def test_body_over_the_cap_is_413_in_the_error_shape():
    with serve(max_body_bytes=CAP) as (client, _):
        response = post(client, padded(CAP + 1))
    assert response.status_code == 413
    assert response.json() == error_body(
        f"the request body exceeds the limit of {CAP} bytes",
        type="invalid_request_error",
        param=None,
        code="request_too_large",
    )


def test_declared_length_over_the_cap_is_refused_before_reading():
    read: list[int] = []
    with serve(max_body_bytes=CAP) as (client, _):
        response = post(
            client, chunks(padded(CAP * 5), read=read), headers={"content-length": str(CAP * 5)}
        )
    assert response.status_code == 413
    assert read == []


def test_chunked_body_over_the_cap_is_413_without_reading_it_all():
    # Driven over raw ASGI because TestClient joins a streamed body before the app sees it.
    received: list[int] = []
    messages = [
        {"type": "http.request", "body": chunk, "more_body": True}
        for chunk in chunks(padded(CAP * 5))
    ]

    async def receive() -> dict:
        received.append(len(received))
        return messages[len(received) - 1]

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/embeddings",
        "raw_path": b"/v1/embeddings",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": None,
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    }
    with serve(max_body_bytes=CAP) as (client, embedder):
        asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(received) == CAP // 100 + 1  # stopped at the first chunk past the cap
    assert embedder.calls == []


def test_lying_content_length_is_413_from_the_bytes_counted():
    with serve(max_body_bytes=CAP) as (client, _):
        response = post(client, padded(CAP * 2), headers={"content-length": "10"})
    assert response.status_code == 413


def test_other_content_type_is_415():
    with serve() as (client, _):
        response = client.post(
            "/v1/embeddings", content=VALID, headers={"content-type": "text/plain"}
        )
    assert response.status_code == 415
    assert response.json() == error_body(
        "Content-Type must be application/json, got 'text/plain'",
        type="invalid_request_error",
        param=None,
        code="unsupported_media_type",
    )


def test_json_content_type_with_charset_is_accepted():
    with serve() as (client, _):
        response = post(client, VALID, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 200


def test_missing_content_type_is_read_as_json():
    with serve() as (client, _):
        response = client.post("/v1/embeddings", content=VALID)
    assert "content-type" not in response.request.headers
    assert response.status_code == 200


def test_malformed_json_is_400():
    with serve() as (client, _):
        for content in (b"{", b"", b'{"model": "epithre-embed", "input": "a"} x'):
            response = post(client, content)
            assert response.status_code == 400
            assert response.json() == error_body(
                "the request body is not valid UTF-8 JSON",
                type="invalid_request_error",
                param=None,
                code="invalid_json",
            )


def test_non_utf8_body_is_400():
    with serve() as (client, _):
        response = post(client, b'{"model": "epithre-embed", "input": "\xff\xfe"}')
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


def _trickle(body: bytes, *, every_s: float):
    """An ASGI receive that delivers `body` one byte every `every_s` seconds."""
    remaining = list(body)

    async def receive() -> dict:
        await asyncio.sleep(every_s)
        byte = bytes([remaining.pop(0)])
        return {"type": "http.request", "body": byte, "more_body": bool(remaining)}

    return receive


def _read_slowly(body: bytes, *, every_s: float, limits: BodyLimits) -> tuple[object, float]:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}

    async def run() -> tuple[object, float]:
        started = asyncio.get_running_loop().time()
        try:
            result: object = await read_json(
                Request(scope, _trickle(body, every_s=every_s)), limits
            )
        except RequestTimeout as error:
            result = error
        return result, asyncio.get_running_loop().time() - started

    return asyncio.run(run())


def test_a_body_slower_than_the_floor_is_408_once_its_average_falls_under_it():
    limits = BodyLimits(max_bytes=CAP, timeout_s=10, min_bytes_per_s=40, grace_s=0.2)
    error, elapsed = _read_slowly(VALID, every_s=0.05, limits=limits)  # 20 bytes/s
    assert isinstance(error, RequestTimeout)
    assert (error.status, error.headers()) == (408, {"Connection": "close"})
    assert elapsed < 1.0


def test_a_body_not_complete_within_its_deadline_is_408():
    limits = BodyLimits(max_bytes=CAP, timeout_s=0.3, min_bytes_per_s=1, grace_s=0.1)
    error, elapsed = _read_slowly(VALID, every_s=0.01, limits=limits)  # 100 bytes/s: too long
    assert isinstance(error, RequestTimeout)
    assert 0.3 <= elapsed < 0.6


def test_a_body_at_the_floor_is_read_whole():
    limits = BodyLimits(max_bytes=CAP, timeout_s=10, min_bytes_per_s=20, grace_s=0.2)
    payload, _ = _read_slowly(VALID, every_s=0.005, limits=limits)  # 200 bytes/s
    assert payload == {"model": "epithre-embed", "input": "a"}
