"""A batch line answered as POST /v1/embeddings answers it, gently.

The body is validated by the realtime endpoint's `parse_request`, embedded by the same
`EmbeddingService` and rendered by the same `render_embeddings`, so a line's vectors and body are
what the realtime endpoint would answer (the realtime tokens-per-minute limit is not charged:
batch tokens have their own budget). A refusal (a bad body, a broken image, a text over the
token limit) is the line's answer, with its status and error body. Load is not: admission
control refusing (429), an open circuit or a busy Triton (503) and a timeout (504) make the line
wait for the Retry-After and go again, so batch work backs off instead of failing or crowding out
realtime requests.

At most `pace.alone` lines are in the service at once, and `pace.beside_realtime` while realtime
requests come (one is in flight, or one ended within `pace.quiet_s`). Priority orders the
towers' queues, but it cannot take back an instance already computing batch work, and Triton's
batcher fills a realtime request's execution with queued batch work: a realtime request waits for
the batch lines in the model, so few are sent while realtime traffic is there.

Usage:
    answers = LineAnswers(service, request_type=rt, model="epithre-embed", pace=Pace.of(settings))
    answer = await answers.answer("line-1", b'{"model": "epithre-embed", "input": "hi"}')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from gateway.batches.records import response_record
from gateway.encoding import render_embeddings
from gateway.errors import APIError, BackendTimeout, RetryLater
from gateway.protocol import EmbeddingRequest
from gateway.service import EmbeddingService
from gateway.settings import Settings
from gateway.validation import parse_request
from model_repository import wire

logger = logging.getLogger("gateway.batches")
# Admission control's identity for all batch work: one caller apart from every key (no sha256
# digest is 5 bytes, and the anonymous one is empty), so once realtime callers share the model,
# batch work is over its fair share and is the first refused.
BATCH_CALLER = b"batch"
# Load that passes: the line waits and goes again, and never lands in the error file for it.
LOAD = (RetryLater, BackendTimeout)
MAX_WAIT_S = 30


@dataclass(frozen=True)
class Pace:
    """Batch lines in the model at once: `alone` while no realtime request is in flight or ended
    within `quiet_s`, `beside_realtime` otherwise (EPITHRE_BATCH_MAX_IN_FLIGHT,
    EPITHRE_BATCH_IN_FLIGHT_BESIDE_REALTIME, EPITHRE_BATCH_REALTIME_QUIET_S)."""

    alone: int
    beside_realtime: int
    quiet_s: float

    @classmethod
    def of(cls, settings: Settings) -> Pace:
        return cls(
            alone=settings.batch_max_in_flight,
            beside_realtime=settings.batch_in_flight_beside_realtime,
            quiet_s=settings.batch_realtime_quiet_s,
        )


@dataclass(frozen=True)
class Answer:
    ok: bool  # answered 2xx
    record: bytes  # the line of the output or error file
    tokens: int
    build: str | None  # the build that computed the vectors; None for a refusal


class LineAnswers:
    def __init__(
        self,
        service: EmbeddingService,
        *,
        request_type: type[EmbeddingRequest],
        model: str,
        pace: Pace,
    ) -> None:
        self._service = service
        self._request_type = request_type
        self._model = model
        self._pace = pace
        self._in_flight = 0
        self._changed = asyncio.Condition()

    def _limit(self) -> int:
        realtime = self._service.realtime_within(self._pace.quiet_s)
        return self._pace.beside_realtime if realtime else self._pace.alone

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """A place among the lines in the service, under the limit of the moment. The limit is
        read again whenever a line leaves: one is always in flight while others wait."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._in_flight < self._limit())
            self._in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    async def answer(self, custom_id: str, body: bytes, *, batch_id: str = "") -> Answer:
        """The line's answer; waits out any load, however long (the batch's lease and
        completion window bound it)."""
        while True:
            async with self._slot():
                try:
                    return await self._send(custom_id, body)
                except LOAD as load:
                    wait_s, reason = min(MAX_WAIT_S, getattr(load, "retry_after", 1)), load.code
            logger.info("batch %s: backing off %d s (%s)", batch_id, wait_s, reason)
            await asyncio.sleep(wait_s)

    async def _send(self, custom_id: str, body: bytes) -> Answer:
        try:
            request = parse_request(orjson.loads(body), self._request_type)
            # Behind every realtime request in the towers' queues (wire.PRIORITY_BATCH).
            result = await self._service.embed(
                request, caller=BATCH_CALLER, priority=wire.PRIORITY_BATCH
            )
        except LOAD:
            raise
        except APIError as refused:
            return _refused(custom_id, refused)
        except Exception as exc:
            # As the realtime endpoint answers a bug: a 500 without internals (and no contents
            # in the log, which names only the kind of failure).
            logger.error("batch line failed unexpectedly: %s", type(exc).__name__)
            return _refused(custom_id, APIError("internal server error"))
        rendered = render_embeddings(
            result, encoding_format=request.encoding_format, model=self._model
        )
        record = response_record(custom_id, status_code=200, body=rendered)
        return Answer(ok=True, record=record, tokens=result.prompt_tokens, build=result.build)


def _refused(custom_id: str, error: APIError) -> Answer:
    record = response_record(custom_id, status_code=error.status, body=error.body())
    return Answer(ok=False, record=record, tokens=0, build=None)
