"""Reading a request body with a hard byte cap and a pace, before any of it is trusted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.disconnect import ClientDisconnected
from gateway.errors import BodyTooLarge, InvalidJSON, RequestTimeout, UnsupportedMediaType


@dataclass(frozen=True)
class BodyLimits:
    """What a route accepts of a body: its size, and how slowly it may arrive.

    A body must be complete within `timeout_s`, and after `grace_s` must have come at
    `min_bytes_per_s` on average: a client trickling bytes holds a connection and a buffer for
    nothing. Each route has its own (large uploads want another floor than JSON requests).
    """

    max_bytes: int
    timeout_s: float
    min_bytes_per_s: float
    # Long enough that a busy event loop, late to read what already arrived, is not taken for a
    # slow client: with 1 s, an overloaded 2-core gateway answered a fast client 408 once.
    grace_s: float = 5.0


async def read_json(request: Request, limits: BodyLimits) -> object:
    """Return the parsed JSON body; 415 for another media type, 413 past the cap, 408 when it
    arrives too slowly, 400 if it is not JSON.

    Usage: `payload = await read_json(request, BodyLimits(25 << 20, 30.0, 10_000))`
    """
    _check_media_type(request.headers.get("content-type"))
    raw = await _read_capped(request, limits)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson also rejects bytes that are not UTF-8, so both cases land here.
        raise InvalidJSON("the request body is not valid UTF-8 JSON") from None


def _check_media_type(content_type: str | None) -> None:
    # Clients that send no Content-Type (curl -d, some SDKs) mean JSON; anything else must say so.
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {media_type!r}")


async def stream_capped(request: Request, limits: BodyLimits) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive: 413 past the cap (a declared Content-Length first), 408
    when it arrives too slowly, ClientDisconnected if the client leaves.

    Usage: `async for chunk in stream_capped(request, limits): ...`
    """
    _check_declared_length(request, limits)
    # Content-Length can lie and chunked bodies have none, so the count of bytes read decides.
    received = 0
    chunks = aiter(request.stream())
    started = asyncio.get_running_loop().time()
    while True:
        # A timeout around each read: one spanning the loop would also run while the caller
        # handles a chunk, and cancel the caller's work.
        try:
            async with asyncio.timeout_at(_next_bytes_due(started, received, limits)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except ClientDisconnect:
            raise ClientDisconnected from None
        except TimeoutError:
            raise _too_slow(started, received, limits) from None
        received += len(chunk)
        if received > limits.max_bytes:
            raise _too_large(limits)
        yield chunk


def _check_declared_length(request: Request, limits: BodyLimits) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)


def _next_bytes_due(started: float, received: int, limits: BodyLimits) -> float:
    """The next bytes are due before the deadline, and before the average would fall under the
    floor rate."""
    return started + min(
        limits.timeout_s, max(limits.grace_s, (received + 1) / limits.min_bytes_per_s)
    )


def _too_slow(started: float, received: int, limits: BodyLimits) -> RequestTimeout:
    return RequestTimeout(
        f"the request body arrived too slowly: {received} bytes in "
        f"{asyncio.get_running_loop().time() - started:.1f} s (at least "
        f"{limits.min_bytes_per_s:.0f} bytes/s, complete within {limits.timeout_s:.0f} s)"
    )


def _too_large(limits: BodyLimits) -> BodyTooLarge:
    return BodyTooLarge(f"the request body exceeds the limit of {limits.max_bytes} bytes")


async def _read_capped(request: Request, limits: BodyLimits) -> bytes:
    """The whole body, under the limits `stream_capped` enforces. One timeout, moved on as the
    bytes arrive, rather than one per chunk: a small request's body comes in one message, and
    each timeout entered costs it a timer."""
    _check_declared_length(request, limits)
    body = bytearray()
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout_at(_next_bytes_due(started, 0, limits)) as timeout:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_bytes:
                    raise _too_large(limits)
                timeout.reschedule(_next_bytes_due(started, len(body), limits))
    except ClientDisconnect:
        raise ClientDisconnected from None
    except TimeoutError:
        raise _too_slow(started, len(body), limits) from None
    return bytes(body)
