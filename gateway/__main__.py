"""`python -m gateway`: serve the API with uvicorn on EPITHRE_HOST:EPITHRE_PORT."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app
from gateway.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    # uvicorn handles SIGTERM itself: it stops accepting, drains in-flight requests, runs lifespan.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
