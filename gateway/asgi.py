"""A small ASGI piece the gateway's middlewares share."""

from __future__ import annotations

from starlette.types import Message, Send


class StatusRecorder:
    """Wraps `send` and remembers the status the app answered with.

    It stays 500 if the app raises before starting a response: that is what the client gets.
    """

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
