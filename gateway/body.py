"""Reading a JSON request body with a hard byte cap, before any of it is trusted."""

from __future__ import annotations

import orjson
from starlette.requests import Request

from gateway.errors import BodyTooLarge, InvalidJSON, UnsupportedMediaType


async def read_json(request: Request, *, max_bytes: int) -> object:
    """Return the parsed JSON body; 415 for another media type, 413 past `max_bytes`, 400 if bad.

    Usage: `payload = await read_json(request, max_bytes=settings.max_body_bytes)`
    """
    _check_media_type(request.headers.get("content-type"))
    raw = await _read_capped(request, max_bytes=max_bytes)
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


async def _read_capped(request: Request, *, max_bytes: int) -> bytes:
    too_large = BodyTooLarge(f"the request body exceeds the limit of {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    # Content-Length can lie and chunked bodies have none, so the count of bytes read decides.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)
