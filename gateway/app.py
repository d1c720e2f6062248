"""`create_app`: the Starlette application, its lifespan and its wiring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
from prometheus_client import start_http_server
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from gateway.access_log import AccessLogMiddleware
from gateway.admission import Admission
from gateway.auth import APIKeys
from gateway.batches.store import BatchStore
from gateway.batches.worker import BatchWorker
from gateway.body import BodyLimits
from gateway.breaker import CircuitBreaker
from gateway.channel import client, reopen_every
from gateway.concurrency import ConcurrencyLimitMiddleware
from gateway.database import open_database
from gateway.disconnect import ClientDisconnected, handle_disconnect
from gateway.embedder import Embedder, ModelFacts
from gateway.errors import (
    APIError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    handle_api_error,
    handle_http_exception,
    handle_unexpected,
)
from gateway.files.payloads import DiskPayloads
from gateway.files.store import FileLimits, FileStore, expire_every
from gateway.files.upload import upload_limits
from gateway.images import configure_pillow
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.openapi import build_document
from gateway.protocol import Limits
from gateway.ratelimit import RateLimiter, open_storage
from gateway.request_id import RequestIDMiddleware
from gateway.routes import ENDPOINTS, METRICS_PATH
from gateway.service import EmbeddingService
from gateway.settings import Settings
from gateway.triton import TritonEmbedder
from gateway.validation import request_type

logger = logging.getLogger("gateway")
RETRY_INTERVAL_S = 0.5
# Expired files are hidden at once; the sweep only frees their space.
EXPIRY_SWEEP_S = 300.0


async def wait_for_facts(embedder: Embedder, *, timeout_s: float) -> ModelFacts:
    """Ask the embedder for its model facts until it answers or `timeout_s` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await embedder.facts()
        # Triton starting up is unreachable or has not loaded the ensemble yet: both pass.
        except (BackendUnavailable, BackendError, BackendTimeout) as exc:
            if loop.time() >= deadline:
                raise RuntimeError(f"no model facts after {timeout_s} s: {exc.message}") from exc
            logger.info("waiting for the model backend: %s", exc.message)
            await asyncio.sleep(RETRY_INTERVAL_S)


def create_app(
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """Build the gateway; an injected `embedder` (a fake in unit tests) replaces Triton.

    `clock` times the rate limits, admission and the builds seen; unit tests pass a fake one to
    step through time.

    Usage: `uvicorn.run(create_app(Settings.from_env()))`
    """
    if settings is None:
        settings = Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not settings.api_keys:
            logger.warning(
                "no API keys (EPITHRE_API_KEYS, EPITHRE_API_KEYS_FILE): "
                "the API accepts unauthenticated requests"
            )
        # Like the gRPC client, a Redis client belongs to the event loop it was made in.
        limiter = RateLimiter(
            requests_per_minute=settings.rate_limit_rpm,
            tokens_per_minute=settings.rate_limit_tpm,
            storage=open_storage(
                settings.rate_limit_storage,
                clock=clock,
                on_error=metrics.rate_limit_storage_errors.inc,
            ),
        )
        metrics.watch_rate_limits(limiter.storage)
        app.state.limiter = limiter
        # What outlives the process: the database the Files and Batch APIs share (SQLite in the
        # data dir, or PostgreSQL), and the files' bytes in the data dir.
        database = open_database(settings)
        app.state.database = database
        payloads = DiskPayloads(Path(settings.data_dir) / "files")
        files = FileStore(database, payloads, limits=FileLimits.of(settings))
        app.state.files = files
        sweeping = asyncio.create_task(expire_every(files, interval_s=EXPIRY_SWEEP_S))
        # One gRPC client per event loop, so it is created here and not at import or build time.
        owned = embedder is None
        active = embedder or TritonEmbedder(
            client(settings.triton_url),
            timeout_s=settings.request_timeout_s,
            ensemble=settings.ensemble,
            image_ensemble=settings.image_ensemble,
        )
        try:
            facts = await wait_for_facts(active, timeout_s=settings.startup_timeout_s)
            # The request's checks, the OpenAPI document and Pillow's bomb guard all follow
            # this deployment's limits and the served model's facts.
            limits = Limits.of(settings, facts)
            if facts.supports_images:
                configure_pillow(max_pixels=facts.max_image_pixels)
            app.state.facts = facts
            app.state.request_type = request_type(limits)
            app.state.openapi = orjson.dumps(build_document(limits))
            app.state.embedder = active
            breaker = CircuitBreaker(
                active.probe,
                threshold=settings.breaker_failures,
                probe_interval_s=settings.breaker_probe_s,
            )
            admission = Admission(
                admit_fraction=settings.admit_wait_fraction,
                fair_fraction=settings.fair_share_wait_fraction,
                clock=clock,
            )
            metrics.watch(admission, breaker)
            app.state.service = EmbeddingService(
                active,
                text_parts=facts.text_tower_instances,
                max_tokens=facts.max_tokens,
                deadline_s=settings.request_timeout_s,
                admission=admission,
                breaker=breaker,
                metrics=metrics,
                clock=clock,
            )
            app.state.batches = BatchStore(database)
            worker = None
            if settings.batch_worker:
                worker = BatchWorker(
                    app.state.batches,
                    files,
                    app.state.service,
                    request_type=app.state.request_type,
                    facts=facts,
                    settings=settings,
                    metrics=metrics,
                )
                worker.start()
            metrics_server = None
            if settings.metrics_port:
                metrics_server, _ = start_http_server(
                    settings.metrics_port, addr=settings.host, registry=metrics.registry
                )
                logger.info("metrics on %s:%d", settings.host, settings.metrics_port)
            reopening = None
            if owned and settings.triton_reopen_s:
                reopening = asyncio.create_task(
                    reopen_every(
                        active,
                        target=settings.triton_url,
                        interval_s=settings.triton_reopen_s,
                        grace_s=settings.request_timeout_s,
                    )
                )
            logger.info("serving %s (%s)", facts.served_model_name, facts.fingerprint)
            yield
            # Before the database closes: the worker gives the chunks it holds back.
            if worker is not None:
                await worker.stop()
            if reopening is not None:
                reopening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reopening
            if metrics_server is not None:
                metrics_server.shutdown()
            await breaker.close()
        finally:
            await limiter.close()
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            database.close()
            if owned:
                await active.close()

    metrics = Metrics()
    # With a metrics port of its own, /metrics is not served on the public one.
    public = [e for e in ENDPOINTS if not (settings.metrics_port and e.path == METRICS_PATH)]
    app = Starlette(
        routes=[Route(e.path, e.handler, methods=[e.method]) for e in public],
        middleware=[
            Middleware(RequestIDMiddleware),
            Middleware(AccessLogMiddleware),
            Middleware(
                MetricsMiddleware, metrics=metrics, paths=frozenset(e.path for e in ENDPOINTS)
            ),
            Middleware(
                ConcurrencyLimitMiddleware,
                limit=settings.max_concurrent_requests,
                exempt=frozenset(e.path for e in ENDPOINTS if not e.authenticated),
            ),
        ],
        exception_handlers={
            APIError: handle_api_error,
            ClientDisconnected: handle_disconnect,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.body_limits = BodyLimits(
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
        min_bytes_per_s=settings.min_body_bytes_per_s,
    )
    app.state.api_keys = APIKeys(settings.api_keys)
    app.state.upload_limits = upload_limits(settings)
    app.state.metrics = metrics
    app.state.draining = False  # set by DrainingServer on SIGTERM
    return app
