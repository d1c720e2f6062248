"""The request path behind POST /v1/embeddings: fan-out, reassembly in input order, usage.

A request's texts go to the embedder as one request per text-tower instance, dealt by length so
that the instances finish together; each image goes as its own request; all are in flight at
once. Rows come back into input order here, and only here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.embedder import Embedder, EmbedOptions, TextEmbeddings
from gateway.errors import ItemError
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


class EmbeddingService:
    """Embeds validated requests through an `Embedder`.

    Usage: `await EmbeddingService(embedder, text_parts=facts.text_tower_instances).embed(request)`
    """

    def __init__(self, embedder: Embedder, *, text_parts: int) -> None:
        self._embedder = embedder
        self._text_parts = text_parts

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        options = EmbedOptions(
            dimensions=request.dimensions,
            instruction=request.instruction,
            truncate=request.truncate,
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
        ((index >= groups, getattr(result, "position", -1), index), result)
        for index, result in enumerate(results)
        if isinstance(result, BaseException)
    ]
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]
