"""Structured access logs: one JSON line per HTTP request on the `gateway.access` logger.

A line holds only what describes the request (method, path, status, timing, id, counts);
never the body, the query string or a header value, so no input text or image byte can leak.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.asgi import StatusRecorder

logger = logging.getLogger("gateway.access")
# Handlers put their counts here (request.state.usage) once they know them.
USAGE_KEY = "usage"
USAGE_FIELDS = ("items", "images", "tokens")


class AccessLogMiddleware:
    """Pure ASGI middleware; it must sit inside `RequestIDMiddleware` to see the request id.

    Usage: `Middleware(AccessLogMiddleware)` after `Middleware(RequestIDMiddleware)`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorder = StatusRecorder(send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, recorder)
        finally:
            state = scope.get("state", {})
            usage = state.get(USAGE_KEY, {})
            line = {
                "method": scope["method"],
                "path": scope["path"],
                "status": recorder.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "request_id": state.get("request_id"),
                # Copied field by field so nothing else a handler stored can reach the log.
                **{name: usage[name] for name in USAGE_FIELDS if name in usage},
            }
            logger.info(orjson.dumps(line).decode())
