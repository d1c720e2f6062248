"""The request path behind POST /v1/embeddings: admission, fan-out, reassembly, usage.

A request is first admitted (gateway/admission.py) or refused with 429, and refused with 503 at
once while the circuit to Triton is open (gateway/breaker.py). Its texts go to the embedder as one
request per text-tower instance, dealt by length so that the instances finish together; each
image goes as its own request; all are in flight at once, with the request's deadline. Rows come
back into input order here, and only here.

A response never mixes vectors of two builds of the model (gateway/builds.py): the parts that came
back from another build than the majority's are sent again, RETRY_COPIES copies at once, at most
BUILD_RETRIES times within the deadline, then the request is answered 503 (ModelUpgrading).
While two builds are being served, a request's texts go as one part, so that only its images can
differ.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import cast

import numpy as np

from gateway.admission import IMAGE_TOKENS, Admission, text_cost
from gateway.breaker import CircuitBreaker
from gateway.builds import RecentBuilds, majority
from gateway.embedder import Embedder, EmbedOptions, ImageEmbedding, TextEmbeddings
from gateway.errors import (
    BackendBusy,
    BackendTimeout,
    BackendUnavailable,
    ItemError,
    ModelUpgrading,
    Overloaded,
)
from gateway.metrics import Metrics
from gateway.protocol import EmbeddingRequest, ItemType
from model_repository import wire

# How many times the parts of a request that came back from another build are sent again, and
# in how many copies at once. A round_robin channel gives consecutive calls to different Tritons,
# so a request's text and image, sent together, nearly always reach different builds during an
# upgrade. Sent again alone, a part met the other build again about half the time: of 500
# requests to two builds (tests/integration/test_mixed_builds.py), 59 were refused after three
# retries. Two copies sent together reach two Tritons, one of each build: none was refused.
BUILD_RETRIES = 3
RETRY_COPIES = 2

Part = TextEmbeddings | ImageEmbedding
# One part of a request (a group of its texts, or one image) sent with the given options.
PartCall = Callable[[EmbedOptions], Awaitable[Part]]


@dataclass(frozen=True)
class Embeddings:
    """The answer to one request, rows in input order, all computed by one build."""

    vectors: np.ndarray  # float32 [n, dimensions], L2-normalized
    types: list[ItemType]
    truncated: list[bool]  # cut at the character or the token limit
    prompt_tokens: int
    build: str  # the fingerprint of the export that computed every row

    @property
    def image_count(self) -> int:
        return self.types.count("image")

    @property
    def truncated_count(self) -> int:
        return sum(self.truncated)


def length_groups(texts: Sequence[str], parts: int) -> list[list[int]]:
    """Indices of `texts` dealt by length into at most `parts` groups of similar cost.

    Dealt in turn from the length order rather than cut into ranges: the instances that run the
    parts finish together, and each part still spans lengths its tower sorts into chunks. Each
    group keeps input order. Lengths are counted in characters: the gateway never tokenizes.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [sorted(order[start::parts]) for start in range(min(parts, len(texts)))]


def request_cost(request: EmbeddingRequest, *, max_tokens: int) -> float:
    """The request's work in estimated tokens, the unit admission counts in."""
    return sum(
        IMAGE_TOKENS if isinstance(item, bytes) else text_cost(item, max_tokens=max_tokens)
        for item in request.input
    )


class EmbeddingService:
    """Embeds validated requests through an `Embedder`, within `deadline_s` each.

    Usage: `await service.embed(request, caller=key_digest)`
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        text_parts: int,
        max_tokens: int,
        deadline_s: float,
        admission: Admission,
        breaker: CircuitBreaker,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._embedder = embedder
        self._text_parts = text_parts
        self._max_tokens = max_tokens
        self._deadline_s = deadline_s
        self.admission = admission
        self.breaker = breaker
        self._metrics = metrics
        self._clock = clock
        self.builds = RecentBuilds(clock=clock)
        # Realtime requests in the service now, and when the last one left it.
        self._realtime_in_flight = 0
        self._realtime_at = -math.inf

    def realtime_within(self, seconds: float) -> bool:
        """Whether realtime requests are being served, or one was within the last `seconds`:
        batch work then gives way (gateway/batches/answers.py)."""
        return self._realtime_in_flight > 0 or self._realtime_at >= self._clock() - seconds

    async def embed(
        self, request: EmbeddingRequest, *, caller: bytes, priority: int = wire.PRIORITY_REALTIME
    ) -> Embeddings:
        """Admit, embed and reassemble; 429 when it could not finish, 503 while Triton is out.

        `priority` is the towers' queue priority: batch work (wire.PRIORITY_BATCH) waits behind
        realtime requests."""
        if priority != wire.PRIORITY_REALTIME:
            return await self._admitted(request, caller=caller, priority=priority)
        self._realtime_in_flight += 1
        try:
            return await self._admitted(request, caller=caller, priority=priority)
        finally:
            self._realtime_in_flight -= 1
            self._realtime_at = self._clock()

    async def _admitted(
        self, request: EmbeddingRequest, *, caller: bytes, priority: int
    ) -> Embeddings:
        cost = request_cost(request, max_tokens=self._max_tokens)
        try:
            self.breaker.check()
            ticket = self.admission.admit(caller, cost=cost, deadline_s=self._deadline_s)
        except Overloaded as refused:
            self._metrics.rejected.labels("fair_share" if refused.over_share else "wait").inc()
            raise
        except BackendUnavailable:
            self._metrics.rejected.labels("circuit_open").inc()
            raise
        self._metrics.admitted.inc()
        try:
            result = await self._embed(request, priority=priority)
        except (BackendUnavailable, BackendTimeout):
            ticket.release(done=False)
            self.breaker.failed()
            raise
        except BackendBusy as busy:
            # Triton's queue was full, or the request waited in it past its deadline.
            ticket.release(done=False)
            self._metrics.rejected.labels("backend_busy").inc()
            retry = self.admission.retry_after(caller, cost=cost, deadline_s=self._deadline_s)
            raise BackendBusy(busy.message, retry_after=retry) from busy
        except ModelUpgrading:
            # Every part was answered, by two builds: Triton is well and its time was spent.
            ticket.release(done=True)
            self.breaker.succeeded()
            raise
        except BaseException:  # item errors, a client that left: Triton is fine
            ticket.release(done=False)
            raise
        ticket.release(done=True)
        self.breaker.succeeded()
        return result

    async def _embed(self, request: EmbeddingRequest, *, priority: int) -> Embeddings:
        started = self._clock()
        options = EmbedOptions(
            dimensions=request.dimensions,
            instruction=request.instruction,
            truncate=request.truncate,
            timeout_s=self._deadline_s,
            priority=priority,
        )
        texts_at, images_at = request.text_positions, request.image_positions
        texts = [request.input[i] for i in texts_at]
        # While two builds are served, a request's texts go as one part: split, they could come
        # back from two builds, and one group would be computed again. Batch work goes as one
        # part too: it has no latency to win from spreading a line over the tower instances,
        # and one part keeps a line to one instance, leaving the other to realtime requests.
        one_part = self.builds.mixed or priority == wire.PRIORITY_BATCH
        parts = 1 if one_part else self._text_parts
        groups = [[texts_at[i] for i in g] for g in length_groups(texts, parts)]
        calls: list[PartCall] = [partial(self._texts, request, positions) for positions in groups]
        calls += [partial(self._image, request, position) for position in images_at]
        results = await self._of_one_build(calls, options, started=started, groups=len(groups))
        vectors = np.empty((len(request.input), request.dimensions), dtype=np.float32)
        tokens = np.zeros(len(request.input), dtype=np.int64)
        truncated = np.array(request.char_truncated, dtype=bool)
        # The first parts are the groups of texts, the others the images, as `calls` lists them.
        text_parts = cast(list[TextEmbeddings], results[: len(groups)])
        image_parts = cast(list[ImageEmbedding], results[len(groups) :])
        for positions, part in zip(groups, text_parts, strict=True):
            vectors[positions], tokens[positions] = part.vectors, part.tokens
            truncated[positions] |= part.truncated
        for position, image in zip(images_at, image_parts, strict=True):
            vectors[position] = image.vector
        return Embeddings(
            vectors=vectors,
            types=["image" if isinstance(item, bytes) else "text" for item in request.input],
            truncated=truncated.tolist(),
            prompt_tokens=int(tokens.sum()),
            build=results[0].build,
        )

    async def _of_one_build(
        self, calls: list[PartCall], options: EmbedOptions, *, started: float, groups: int
    ) -> list[Part]:
        """Every part's answer, all from one build: the one most parts came back from, or on a
        tie the first part's. The others are sent again, RETRY_COPIES copies each, at most
        BUILD_RETRIES times and within the request's deadline; ModelUpgrading when they still
        come back from another build."""
        parts = _answered(await self._send(calls, options), groups=groups)
        for retry in range(BUILD_RETRIES + 1):
            build = majority([part.build for part in parts])
            odd = [i for i, part in enumerate(parts) if part.build != build]
            if not odd:
                return parts
            remaining_s = self._deadline_s - (self._clock() - started)
            if retry == BUILD_RETRIES or remaining_s <= 0:
                break
            copies = [calls[i] for i in odd for _ in range(RETRY_COPIES)]
            self._metrics.build_retries.inc(len(copies))
            answers = await self._send(copies, replace(options, timeout_s=remaining_s))
            merged: list[Part | BaseException] = list(parts)
            for n, i in enumerate(odd):
                merged[i] = _preferred(answers[n * RETRY_COPIES : (n + 1) * RETRY_COPIES], build)
            parts = _answered(merged, groups=groups)
        raise ModelUpgrading(
            "the model is being upgraded and parts of this request kept coming back from "
            "different builds; retry shortly"
        )

    async def _send(
        self, calls: list[PartCall], options: EmbedOptions
    ) -> list[Part | BaseException]:
        """The calls' answers or failures, all in flight at once; the builds that answered are
        noted."""
        if len(calls) == 1:
            # A lone part (one word, one text) is awaited as it is: gather would wrap it in a
            # task of its own, a turn of the event loop more.
            try:
                answers: list[Part | BaseException] = [await calls[0](options)]
            except Exception as failure:  # returned, as gather returns it
                answers = [failure]
        else:
            answers = await asyncio.gather(
                *(call(options) for call in calls), return_exceptions=True
            )
        for answer in answers:
            if not isinstance(answer, BaseException):
                self.builds.saw(answer.build)
        return answers

    async def _texts(
        self, request: EmbeddingRequest, positions: list[int], options: EmbedOptions
    ) -> TextEmbeddings:
        try:
            return await self._embedder.embed_texts([request.input[i] for i in positions], options)
        except ItemError as error:
            # The embedder counts rows of its own request; the client counts its whole `input`.
            raise error.at(positions) from None

    async def _image(
        self, request: EmbeddingRequest, position: int, options: EmbedOptions
    ) -> ImageEmbedding:
        try:
            return await self._embedder.embed_image(request.input[position], options)
        except ItemError as error:
            raise error.at([position]) from None


def _preferred(copies: Sequence[Part | BaseException], build: str) -> Part | BaseException:
    """Of the copies of one part, an answer from `build`, else another answer, else a failure."""
    answers = [copy for copy in copies if not isinstance(copy, BaseException)]
    return next((a for a in answers if a.build == build), answers[0] if answers else copies[0])


def _answered(results: Sequence[Part | BaseException], *, groups: int) -> list[Part]:
    """The parts' answers, or the first failure raised. Failures surface in a fixed order, never
    by timing: texts (the first `groups` parts) before images, then by position."""
    failures = [
        ((index >= groups, result.item if isinstance(result, ItemError) else -1, index), result)
        for index, result in enumerate(results)
        if isinstance(result, BaseException)
    ]
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]
    return [result for result in results if not isinstance(result, BaseException)]
