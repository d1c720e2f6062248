"""Cancel the model call when the client goes away, so Triton's work is not waited on for nobody."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before the answer; nothing is sent back."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and its gRPC calls) if the client disconnects first.

    Usage: `result = await unless_disconnected(request, asyncio.gather(...))`, after the body has
    been read: from then on the only message the server can receive is the disconnect.
    """
    # The work runs in the caller's own task, which the watcher cancels: a task of its own would
    # cost every request a task and a turn of the event loop more.
    caller = asyncio.current_task()
    assert caller is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        caller.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            # The cancellation was the watcher's: the caller's task goes on to answer 499.
            caller.uncancel()
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()


async def handle_disconnect(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; 499 (nginx's "client closed request") keeps logs and metrics honest.
    return Response(status_code=499)
