"""Prometheus metrics of the HTTP side, in a registry owned by one app."""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission import Admission
from gateway.asgi import StatusRecorder
from gateway.breaker import CircuitBreaker
from gateway.ratelimit import Storage

# Latency buckets around what one batched embedding call costs, from milliseconds to the timeout.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The gateway's instruments; a per-app registry keeps apps in one process (tests) apart.

    Usage: `metrics = Metrics(); metrics.observe_embeddings(items=2, tokens=9, truncated=0)`
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "epithre_http_requests",
            "HTTP requests by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "epithre_http_request_duration_seconds",
            "HTTP request latency by path",
            ["path"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "epithre_http_requests_in_flight", "HTTP requests being served", registry=self.registry
        )
        self.items = Counter("epithre_embedded_items", "Items embedded", registry=self.registry)
        self.images = Counter(
            "epithre_embedded_images", "Image items embedded", registry=self.registry
        )
        self.tokens = Counter(
            "epithre_prompt_tokens", "Tokens fed to the encoder", registry=self.registry
        )
        self.truncations = Counter(
            "epithre_truncated_items",
            "Items cut by the character cap or the token limit",
            registry=self.registry,
        )

        self.admitted = Counter(
            "epithre_admitted_requests",
            "Embedding requests admitted to Triton by admission control",
            registry=self.registry,
        )
        self.rejected = Counter(
            "epithre_rejected_requests",
            "Embedding requests refused for overload (429) or an open circuit (503), by reason: "
            "wait (would miss its deadline), fair_share (its caller held more than its share), "
            "backend_busy (Triton's queue refused it or timed it out), circuit_open",
            ["reason"],
            registry=self.registry,
        )
        self.wait = Gauge(
            "epithre_admission_wait_seconds",
            "Estimated wait of a new request: work in flight over the measured rate",
            registry=self.registry,
        )
        self.work_in_flight = Gauge(
            "epithre_admission_in_flight_tokens",
            "Work admitted and not yet answered, in estimated tokens",
            registry=self.registry,
        )
        self.rate = Gauge(
            "epithre_admission_rate_tokens_per_second",
            "Estimated tokens Triton finishes per second while it has work (last 10 s)",
            registry=self.registry,
        )
        self.build_retries = Counter(
            "epithre_build_mismatch_retries",
            "Parts of embedding requests (a group of texts or an image) sent again because they "
            "came back from another build of the model than the rest of the request",
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "epithre_circuit_open",
            "1 while the circuit to Triton is open (requests answered 503 at once)",
            registry=self.registry,
        )
        self.rate_limit_storage_up = Gauge(
            "epithre_rate_limit_storage_up",
            "1 while the rate-limit storage answers (always, in memory); 0 while Redis does not "
            "and requests are admitted without rate limits",
            registry=self.registry,
        )
        self.rate_limit_storage_errors = Counter(
            "epithre_rate_limit_storage_errors",
            "Calls to the rate-limit storage (Redis) that failed or timed out",
            registry=self.registry,
        )
        # Counted from the database by each process that runs a batch worker: gateways sharing
        # one report the same numbers (take the max across them, not the sum).
        self.batches = Gauge(
            "epithre_batches", "Batches by status", ["status"], registry=self.registry
        )
        self.batch_backlog = Gauge(
            "epithre_batch_backlog_lines",
            "Lines of batches in progress not answered yet",
            registry=self.registry,
        )
        self.batch_lines = Counter(
            "epithre_batch_lines",
            "Batch lines this process answered and checkpointed, by outcome: completed (2xx, "
            "the output file) or failed (the error file)",
            ["outcome"],
            registry=self.registry,
        )

    def watch_rate_limits(self, storage: Storage) -> None:
        """Read whether the rate-limit storage answers at each scrape."""
        self.rate_limit_storage_up.set_function(lambda: float(storage.up))

    def watch(self, admission: Admission, breaker: CircuitBreaker) -> None:
        """Read the admission estimates and the circuit's state at each scrape."""
        self.wait.set_function(admission.wait_s)
        self.work_in_flight.set_function(lambda: admission.in_flight)
        self.rate.set_function(lambda: admission.rate)
        self.circuit_open.set_function(lambda: float(breaker.is_open))

    def observe_embeddings(self, *, items: int, tokens: int, truncated: int, images: int) -> None:
        self.items.inc(items)
        self.images.inc(images)
        self.tokens.inc(tokens)
        self.truncations.inc(truncated)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by status and times it, labelled by the route's template
    (`/v1/files/{file_id}`); unknown paths share one label."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = [(compile_path(path)[0], path) for path in sorted(paths)]

    def _label(self, path: str) -> str:
        # Labelling by raw path would let any client create unbounded label values.
        return next((t for pattern, t in self.templates if pattern.match(path)), "other")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = self._label(scope["path"])
        recorder = StatusRecorder(send)
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, recorder)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
            self.metrics.requests.labels(path, str(recorder.status)).inc()
