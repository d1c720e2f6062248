"""The small protocol the request path depends on, so unit tests can pass a fake backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model_repository import wire


@dataclass(frozen=True)
class ModelFacts:
    """What Triton serves, as the loaded configs declare it (read once at start-up)."""

    served_model_name: str
    native_dimension: int
    max_tokens: int
    fingerprint: str  # of the build whose configs were read; each answer names its own build
    supports_images: bool = False
    # The image preprocess's bomb guard, which the gateway applies from the header first.
    max_image_pixels: int = 0
    # Instances of the text tower: a request's texts go as this many Triton requests.
    text_tower_instances: int = 1


@dataclass(frozen=True)
class EmbedOptions:
    """How to embed: the same for every item of one API request."""

    dimensions: int = wire.NATIVE_DIMENSIONS
    instruction: str = ""  # "" = none; texts only
    truncate: str = wire.TRUNCATE_END
    timeout_s: float | None = None  # None = the embedder's own deadline
    # The towers' queue priority: realtime requests go before batch work (wire.PRIORITY_BATCH).
    priority: int = wire.PRIORITY_REALTIME


@dataclass(frozen=True)
class TextEmbeddings:
    """One backend answer for `n` texts, rows in the order the texts were sent."""

    vectors: np.ndarray  # float32 [n, d], L2-normalized
    tokens: np.ndarray  # int [n], tokens fed to the encoder per text
    truncated: np.ndarray  # bool [n], cut at the model's token limit
    build: str  # the fingerprint of the export that computed the answer


@dataclass(frozen=True)
class ImageEmbedding:
    """One backend answer for one image."""

    vector: np.ndarray  # float32 [d], L2-normalized
    build: str  # the fingerprint of the export that computed the answer


class Embedder(Protocol):
    """The model behind the API; `TritonEmbedder` is the real one."""

    async def facts(self) -> ModelFacts: ...

    async def embed_texts(self, texts: Sequence[str], options: EmbedOptions) -> TextEmbeddings:
        """Texts as one backend request; a per-item error names the row in `texts`."""
        ...

    async def embed_image(self, image: bytes, options: EmbedOptions) -> ImageEmbedding:
        """One encoded image file as one backend request."""
        ...

    async def probe(self) -> None:
        """Embed one short text end to end; raise if the model cannot answer."""
        ...

    async def close(self) -> None: ...
