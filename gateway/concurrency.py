"""A cap on the requests one gateway process serves at once, answered with the API's own 503.

uvicorn's `limit_concurrency` answers past its cap in plain text without Retry-After; clients of
this API expect its JSON error and a time to come back.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayBusy


class ConcurrencyLimitMiddleware:
    """Pure ASGI middleware; `exempt` paths (health checks, metrics) are always served."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            busy = GatewayBusy(f"this gateway is serving its limit of {self.limit} requests")
            headers = [(k.lower().encode(), v.encode()) for k, v in busy.headers().items()]
            headers.append((b"content-type", b"application/json"))
            await send({"type": "http.response.start", "status": busy.status, "headers": headers})
            await send({"type": "http.response.body", "body": busy.body()})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
