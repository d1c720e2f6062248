"""The small protocol the HTTP layer depends on, so unit tests can pass a fake backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

TruncateMode = Literal["END", "START", "NONE"]


@dataclass(frozen=True)
class ModelFacts:
    """What the served model is, as the ensemble's config `parameters` declare it."""

    served_model_name: str
    native_dimension: int
    max_tokens: int
    fingerprint: str
    supports_images: bool = False


@dataclass(frozen=True)
class TextEmbeddings:
    """One backend answer for `n` texts, rows in the order the texts were sent."""

    vectors: np.ndarray  # float32 [n, d], L2-normalized
    tokens: np.ndarray  # int [n], tokens fed to the encoder per text
    truncated: np.ndarray  # bool [n], cut at the model's token limit


class Embedder(Protocol):
    """The model behind the API; `TritonEmbedder` is the real one."""

    async def facts(self) -> ModelFacts: ...

    async def embed_texts(
        self,
        texts: list[str],
        *,
        instruction: str,
        truncate: TruncateMode,
        dimensions: int,
    ) -> TextEmbeddings: ...

    async def embed_image(self, image: bytes, *, dimensions: int) -> np.ndarray:
        """One encoded image file -> its L2-normalized float32 [d] vector."""
        ...

    async def probe(self) -> None:
        """Embed one short text end to end; raise if the model cannot answer."""
        ...

    async def close(self) -> None: ...
