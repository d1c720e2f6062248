"""The request path behind POST /v1/embeddings: admission, fan-out, reassembly, usage.

A request is first admitted (gateway/admission.py) or refused with 429, and refused with 503 at
once while the circuit to Triton is open (gateway/breaker.py). Its texts go to the embedder as one
request per text-tower instance, dealt by length so that the instances finish together; each
image goes as its own request; all are in flight at once, with the request's deadline. Rows come
back into input order here, and only here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.admission import IMAGE_TOKENS, Admission, text_cost
from gateway.breaker import CircuitBreaker
from gateway.embedder import Embedder, EmbedOptions, TextEmbeddings
from gateway.errors import BackendBusy, BackendTimeout, BackendUnavailable, ItemError, Overloaded
from gateway.metrics import Metrics
from gateway.protocol import EmbeddingRequest, ItemType


@dataclass(frozen=True)
class Embeddings:
    """The answer to one request, rows in input order."""

    vectors: np.ndarray  # float32 [n, dimensions], L2-normalized
    types: list[ItemType]
    truncated: list[bool]  # cut at the character or the token limit
    prompt_tokens: int

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
    ) -> None:
        self._embedder = embedder
        self._text_parts = text_parts
        self._max_tokens = max_tokens
        self._deadline_s = deadline_s
        self.admission = admission
        self.breaker = breaker
        self._metrics = metrics

    async def embed(self, request: EmbeddingRequest, *, caller: bytes) -> Embeddings:
        """Admit, embed and reassemble; 429 when it could not finish, 503 while Triton is out."""
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
            result = await self._embed(request)
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
        except BaseException:  # item errors, a client that left: Triton is fine
            ticket.release(done=False)
            raise
        ticket.release(done=True)
        self.breaker.succeeded()
        return result

    async def _embed(self, request: EmbeddingRequest) -> Embeddings:
        options = EmbedOptions(
            dimensions=request.dimensions,
            instruction=request.instruction,
            truncate=request.truncate,
            timeout_s=self._deadline_s,
        )
        texts_at, images_at = request.text_positions, request.image_positions
        texts = [request.input[i] for i in texts_at]
        groups = [[texts_at[i] for i in g] for g in length_groups(texts, self._text_parts)]
        jobs = [self._texts(request, positions, options) for positions in groups]
        jobs += [self._image(request, position, options) for position in images_at]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        _raise_first(results, groups=len(groups))
        vectors = np.empty((len(request.input), request.dimensions), dtype=np.float32)
        tokens = np.zeros(len(request.input), dtype=np.int64)
        truncated = np.array(request.char_truncated, dtype=bool)
        for positions, part in zip(groups, results, strict=False):
            vectors[positions], tokens[positions] = part.vectors, part.tokens
            truncated[positions] |= part.truncated
        for position, vector in zip(images_at, results[len(groups) :], strict=True):
            vectors[position] = vector
        return Embeddings(
            vectors=vectors,
            types=["image" if isinstance(item, bytes) else "text" for item in request.input],
            truncated=truncated.tolist(),
            prompt_tokens=int(tokens.sum()),
        )

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
    ) -> np.ndarray:
        try:
            return await self._embedder.embed_image(request.input[position], options)
        except ItemError as error:
            raise error.at([position]) from None


def _raise_first(results: list, *, groups: int) -> None:
    """Errors surface in a fixed order, never by timing: texts before images, then by position."""
    failures = [
        ((index >= groups, result.item if isinstance(result, ItemError) else -1, index), result)
        for index, result in enumerate(results)
        if isinstance(result, BaseException)
    ]
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]
