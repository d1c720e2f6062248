"""`DrainingServer`: uvicorn's server with a SIGTERM that turns readiness 503 before stopping."""

from __future__ import annotations

import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, mark the app draining, wait `drain_s`, then stop as uvicorn does.

    uvicorn's own shutdown stops accepting, lets in-flight requests finish and runs the lifespan;
    the flag set first makes `/health/ready` answer 503 meanwhile, so a load balancer that is
    still probing stops routing here. A second signal stops at once.

    Usage: `DrainingServer(uvicorn.Config(app), app=app, drain_s=5.0).run()`
    """

    def __init__(self, config: uvicorn.Config, *, app: Starlette, drain_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_s = drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        already_draining = self._app.state.draining
        self._app.state.draining = True
        if already_draining or self._drain_s <= 0:
            super().handle_exit(sig, frame)
            return
        # uvicorn.Server.handle_exit only sets flags its main loop polls, so a timer thread may
        # call it; the event loop keeps serving in-flight and new requests until then.
        timer = threading.Timer(self._drain_s, uvicorn.Server.handle_exit, (self, sig, frame))
        timer.daemon = True
        timer.start()
