"""A client that disconnects cancels the model call it was waiting for."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from gateway_fakes import FakeEmbedder
from starlette.requests import Request

from gateway import Settings, create_app
from gateway.disconnect import ClientDisconnected, unless_disconnected


class HangingEmbedder(FakeEmbedder):
    """embed_texts waits forever; records whether it was cancelled."""

    cancelled: bool = False

    async def embed_texts(self, texts, options):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def _disconnecting_request(embedder: HangingEmbedder) -> list[dict]:
    app = create_app(Settings(), embedder)
    body = orjson.dumps({"model": "epithre-embed", "input": ["a"]})
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    gone = asyncio.Event()

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/embeddings",
        "raw_path": b"/v1/embeddings",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
        "app": app,
        "state": {},
    }
    async with app.router.lifespan_context(app):
        call = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(0.05)
        gone.set()
        await asyncio.wait_for(call, timeout=5)
    return sent


def test_a_client_disconnect_cancels_the_model_call():
    embedder = HangingEmbedder()
    sent = asyncio.run(_disconnecting_request(embedder))
    assert embedder.cancelled
    assert sent[0]["status"] == 499


def _request(receive) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


async def _never() -> dict:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_after_a_disconnect_the_request_task_goes_on_uncancelled():
    async def disconnected() -> dict:
        return {"type": "http.disconnect"}

    async def scenario() -> int:
        with pytest.raises(ClientDisconnected):
            await unless_disconnected(_request(disconnected), asyncio.Event().wait())
        await asyncio.sleep(0)  # would raise CancelledError if the watcher's cancel lingered
        return asyncio.current_task().cancelling()

    assert asyncio.run(scenario()) == 0


def test_a_cancellation_that_is_not_a_disconnect_stays_a_cancellation():
    async def scenario() -> None:
        call = asyncio.ensure_future(unless_disconnected(_request(_never), asyncio.Event().wait()))
        await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(scenario())
