"""The per-process cap on concurrent requests: the API's 503 JSON with Retry-After beyond it."""

from __future__ import annotations

import asyncio

import orjson

from gateway.concurrency import ConcurrencyLimitMiddleware


class Held:
    """An ASGI app whose requests wait until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    await app({"type": "http", "path": path, "method": "POST"}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_past_the_cap_a_request_gets_503_json_with_retry_after_and_exempt_paths_pass():
    async def run():
        inner = Held()
        app = ConcurrencyLimitMiddleware(inner, limit=2, exempt=frozenset({"/health/ready"}))
        held = [asyncio.ensure_future(_call(app, "/v1/embeddings")) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await _call(app, "/v1/embeddings")
        health = asyncio.ensure_future(_call(app, "/health/ready"))
        inner.release.set()
        answers = await asyncio.gather(*held, health)
        after = await _call(app, "/v1/embeddings")
        return refused, answers, after, app.in_flight

    refused, answers, after, in_flight = asyncio.run(run())
    status, headers, body = refused
    assert (status, headers[b"retry-after"], headers[b"content-type"]) == (
        503,
        b"1",
        b"application/json",
    )
    assert orjson.loads(body)["error"] == {
        "message": "this gateway is serving its limit of 2 requests",
        "type": "service_unavailable_error",
        "param": None,
        "code": "gateway_busy",
    }
    assert [a[0] for a in answers] == [200, 200, 200]
    assert (after[0], in_flight) == (200, 0)
