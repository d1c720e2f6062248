"""`python -m gateway`: serve the API with uvicorn on EPITHRE_HOST:EPITHRE_PORT."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app
from gateway.server import DrainingServer
from gateway.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        # Named rather than "auto" so that a missing one fails at start instead of slowing down.
        loop="uvloop",
        http="httptools",
        # gateway.access_log writes one JSON line per request; uvicorn's would be a second one.
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
    )
    # The subclass's SIGTERM handler turns readiness 503 first, then chains to uvicorn's, which
    # stops accepting, drains in-flight requests and runs the lifespan shutdown.
    DrainingServer(config, app=app, drain_s=settings.drain_s).run()


if __name__ == "__main__":
    main()
