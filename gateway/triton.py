"""`TritonEmbedder`: the `Embedder` over one `tritonclient.grpc.aio` client, and its error map."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from gateway.embedder import ModelFacts, TextEmbeddings, TruncateMode
from gateway.errors import (
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ImageRejected,
    TokenLimitExceeded,
)

logger = logging.getLogger("gateway")

# The ensemble's wire contract (docs/architecture.md); integration tests hold it to export/.
TEXT, INSTRUCTION, TRUNCATE, DIMENSIONS = "TEXT", "INSTRUCTION", "TRUNCATE", "DIMENSIONS"
IMAGE = "IMAGE"
EMBEDDING, TOKENS, TRUNCATED = "EMBEDDING", "TOKENS", "TRUNCATED"
NATIVE = 0  # DIMENSIONS value that asks for the native size
PROBE_TIMEOUT_S = 5.0

# The reason reaches the client, so only its first line and 200 characters are kept.
_INVALID_IMAGE = re.compile(r"INVALID_IMAGE: (.{0,200})")
_TOKEN_LIMIT = re.compile(r"TOKEN_LIMIT_EXCEEDED item=(\d+) tokens=(\d+) limit=(\d+)")
_QUEUE_FULL = "Exceeds maximum queue size"
_UNAVAILABLE = str(grpc.StatusCode.UNAVAILABLE)
_DEADLINE = str(grpc.StatusCode.DEADLINE_EXCEEDED)


@contextlib.contextmanager
def map_triton_errors() -> Iterator[None]:
    """Translate every Triton, gRPC and transport failure into one `APIError` subclass."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise _mapped(exc.code(), exc.details()) from exc
    except InferenceServerException as exc:
        raise _mapped(exc.status(), exc.message()) from exc
    except TimeoutError as exc:
        raise BackendTimeout("the model did not answer in time") from exc
    except OSError as exc:
        logger.warning("triton transport error: %s", exc)
        raise BackendUnavailable("the model backend is unavailable") from exc


def _mapped(status: object, message: str | None) -> Exception:
    status, message = str(status), message or ""
    if match := _TOKEN_LIMIT.search(message):
        item, tokens, limit = map(int, match.groups())
        return TokenLimitExceeded(item=item, tokens=tokens, limit=limit)
    if match := _INVALID_IMAGE.search(message):
        return ImageRejected(match.group(1))
    if status == _DEADLINE:
        return BackendTimeout("the model did not answer in time")
    # Triton reports a full queue as UNAVAILABLE too; only the message tells it from a dead server.
    if status == _UNAVAILABLE and _QUEUE_FULL in message:
        return BackendBusy("the model is busy; retry shortly")
    # Capped: a backend message must not carry a whole tensor (an image's bytes) into the logs.
    logger.warning("triton error %s: %.500s", status, message)
    if status == _UNAVAILABLE:
        return BackendUnavailable("the model backend is unavailable")
    return BackendError("the model backend failed to answer")


def parse_facts(config: Mapping[str, Any]) -> ModelFacts:
    """Read `ModelFacts` from `get_model_config(..., as_json=True)`'s answer."""
    parameters = config.get("config", config).get("parameters", {})

    def value(key: str) -> str:
        try:
            return parameters[key]["string_value"]
        except KeyError:
            raise ValueError(f"the ensemble config has no parameter {key!r}") from None

    return ModelFacts(
        served_model_name=value("served_model_name"),
        native_dimension=int(value("native_dimension")),
        max_tokens=int(value("max_tokens")),
        fingerprint=value("fingerprint"),
        supports_images="image" in _modalities(parameters),
    )


def _modalities(parameters: Mapping[str, Any]) -> set[str]:
    # "text" or "text,image"; an ensemble exported before images existed has no such parameter.
    raw = parameters.get("modalities", {}).get("string_value", "text")
    return {m.strip() for m in raw.split(",")}


def length_groups(texts: list[str], parts: int) -> list[np.ndarray]:
    """Indices of `texts` dealt by length into at most `parts` groups of similar cost.

    Dealt in turn from the length order rather than cut into ranges: the instances that run the
    parts finish together, and each part still spans lengths its tower sorts into chunks.
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [order[start::parts] for start in range(min(parts, len(texts)))]


def _bytes_input(name: str, values: list[str]) -> InferInput:
    tensor = InferInput(name, [len(values), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[v.encode()] for v in values], dtype=np.object_))
    return tensor


class TritonEmbedder:
    """Embeds through the `ensemble` on Triton; all of a request's texts go as one batch.

    Usage: `embedder = TritonEmbedder(InferenceServerClient("127.0.0.1:8001"), ...)`
    """

    def __init__(
        self,
        client: InferenceServerClient,
        *,
        ensemble: str,
        image_ensemble: str,
        timeout_s: float,
        text_parts: int = 1,
    ) -> None:
        self._client = client
        self._text_parts = text_parts
        self._ensemble = ensemble
        self._image_ensemble = image_ensemble
        self._timeout_s = timeout_s
        self._outputs = [InferRequestedOutput(n) for n in (EMBEDDING, TOKENS, TRUNCATED)]

    async def facts(self) -> ModelFacts:
        with map_triton_errors():
            config = await self._client.get_model_config(
                self._ensemble, as_json=True, client_timeout=self._timeout_s
            )
        return parse_facts(config)

    async def embed_texts(
        self,
        texts: list[str],
        *,
        instruction: str,
        truncate: TruncateMode,
        dimensions: int,
        timeout_s: float | None = None,
    ) -> TextEmbeddings:
        """All texts as `text_parts` Triton requests of similar cost, answered in input order.

        Parts let the tower's instances share one request's texts; lengths are counted in
        characters, since the gateway never tokenizes.
        """
        groups = length_groups(texts, self._text_parts)
        if len(groups) <= 1:
            return await self._embed(texts, instruction, truncate, dimensions, timeout_s)
        parts = await asyncio.gather(
            *(
                self._embed_group(texts, group, instruction, truncate, dimensions, timeout_s)
                for group in groups
            )
        )
        vectors = np.empty((len(texts), parts[0].vectors.shape[1]), dtype=np.float32)
        tokens = np.empty(len(texts), dtype=parts[0].tokens.dtype)
        truncated = np.empty(len(texts), dtype=bool)
        for group, part in zip(groups, parts, strict=True):
            vectors[group], tokens[group], truncated[group] = (
                part.vectors,
                part.tokens,
                part.truncated,
            )
        return TextEmbeddings(vectors=vectors, tokens=tokens, truncated=truncated)

    async def _embed_group(
        self,
        texts: list[str],
        group: np.ndarray,
        instruction: str,
        truncate: TruncateMode,
        dimensions: int,
        timeout_s: float | None,
    ) -> TextEmbeddings:
        try:
            return await self._embed(
                [texts[i] for i in group], instruction, truncate, dimensions, timeout_s
            )
        except TokenLimitExceeded as exc:
            raise exc.at(int(group[exc.item])) from exc

    async def _embed(
        self,
        texts: list[str],
        instruction: str,
        truncate: TruncateMode,
        dimensions: int,
        timeout_s: float | None,
    ) -> TextEmbeddings:
        n = len(texts)
        dims = InferInput(DIMENSIONS, [n, 1], "INT32")
        dims.set_data_from_numpy(np.full((n, 1), dimensions, dtype=np.int32))
        inputs = [
            _bytes_input(TEXT, texts),
            _bytes_input(INSTRUCTION, [instruction] * n),
            _bytes_input(TRUNCATE, [truncate] * n),
            dims,
        ]
        with map_triton_errors():
            result = await self._client.infer(
                self._ensemble,
                inputs,
                outputs=self._outputs,
                client_timeout=timeout_s or self._timeout_s,
            )
        return TextEmbeddings(
            vectors=np.ascontiguousarray(result.as_numpy(EMBEDDING), dtype=np.float32),
            tokens=result.as_numpy(TOKENS).reshape(n),
            truncated=result.as_numpy(TRUNCATED).reshape(n).astype(bool),
        )

    async def embed_image(self, image: bytes, *, dimensions: int) -> np.ndarray:
        encoded = InferInput(IMAGE, [1, 1], "BYTES")
        encoded.set_data_from_numpy(np.array([[image]], dtype=np.object_))
        dims = InferInput(DIMENSIONS, [1, 1], "INT32")
        dims.set_data_from_numpy(np.full((1, 1), dimensions, dtype=np.int32))
        with map_triton_errors():
            result = await self._client.infer(
                self._image_ensemble,
                [encoded, dims],
                outputs=[InferRequestedOutput(EMBEDDING)],
                client_timeout=self._timeout_s,
            )
        return np.asarray(result.as_numpy(EMBEDDING)[0], dtype=np.float32)

    async def probe(self) -> None:
        await self.embed_texts(
            ["probe"], instruction="", truncate="END", dimensions=NATIVE, timeout_s=PROBE_TIMEOUT_S
        )

    async def close(self) -> None:
        await self._client.close()
