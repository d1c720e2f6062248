"""`TritonEmbedder`: the `Embedder` over one `tritonclient.grpc.aio` client, and its error map.

Every name it sends or reads is the wire contract's (`model_repository/wire.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from gateway.embedder import EmbedOptions, ImageEmbedding, ModelFacts, TextEmbeddings
from gateway.errors import (
    APIError,
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ImageRejected,
    TokenLimitExceeded,
)
from model_repository import wire

logger = logging.getLogger("gateway")

# A probe of one short text: longer than this means Triton is stopped or hopelessly behind.
PROBE_TIMEOUT_S = 2.0
# The share of a call's deadline it may spend in a tower's queue.
QUEUE_SHARE = 0.8
# Tries of a call whose Triton vanished under it (connection refused, reset or silent): each goes
# to another connected Triton of the round_robin channel. Overload answers are never retried.
TRANSPORT_TRIES = 3
# The reason of a refused image reaches the client, so only its first line and 200 characters.
REASON_CHARS = 200
# Triton answers both kinds of overload UNAVAILABLE; only the message tells them from a dead server.
_OVERLOAD = ("Exceeds maximum queue size", "Request timeout expired")

# Every gRPC status, one by one. INVALID_ARGUMENT without a per-item error is a request the
# gateway itself got wrong (Triton's own tensor checks answer it too): a bug report, never a 400.
STATUS_ERRORS: dict[grpc.StatusCode, type[APIError]] = {
    grpc.StatusCode.OK: BackendError,
    grpc.StatusCode.CANCELLED: BackendError,
    grpc.StatusCode.UNKNOWN: BackendError,
    grpc.StatusCode.INVALID_ARGUMENT: BackendError,
    grpc.StatusCode.DEADLINE_EXCEEDED: BackendTimeout,
    grpc.StatusCode.NOT_FOUND: BackendError,
    grpc.StatusCode.ALREADY_EXISTS: BackendError,
    grpc.StatusCode.PERMISSION_DENIED: BackendError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: BackendError,
    grpc.StatusCode.FAILED_PRECONDITION: BackendError,
    grpc.StatusCode.ABORTED: BackendError,
    grpc.StatusCode.OUT_OF_RANGE: BackendError,
    grpc.StatusCode.UNIMPLEMENTED: BackendError,
    grpc.StatusCode.INTERNAL: BackendError,
    grpc.StatusCode.UNAVAILABLE: BackendUnavailable,
    grpc.StatusCode.DATA_LOSS: BackendError,
    grpc.StatusCode.UNAUTHENTICATED: BackendError,
}
_MESSAGES: dict[type[APIError], str] = {
    BackendError: "the model backend failed to answer",
    BackendTimeout: "the model did not answer in time",
    BackendUnavailable: "the model backend is unavailable",
    BackendBusy: "the model is busy; retry shortly",
}
# tritonclient reports a status as str(grpc.StatusCode.X).
_STATUS_NAMES = {str(code): code for code in grpc.StatusCode}


@contextlib.contextmanager
def map_triton_errors() -> Iterator[None]:
    """Translate every Triton, gRPC and transport failure into one `APIError` subclass."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise status_error(exc.code(), exc.details()) from exc
    except InferenceServerException as exc:
        raise status_error(_STATUS_NAMES.get(str(exc.status())), exc.message()) from exc
    except TimeoutError as exc:
        raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
    except OSError as exc:
        logger.warning("triton transport error: %s", exc)
        raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc


def status_error(status: grpc.StatusCode | None, message: str | None) -> APIError:
    """The API's error for a failed Triton call: a declared per-item error, or by status."""
    message = message or ""
    item = wire.ItemError.decode(message)
    if item is not None and status == grpc.StatusCode.INVALID_ARGUMENT:
        return _item_error(item)
    kind = STATUS_ERRORS.get(status, BackendError) if status is not None else BackendError
    if kind is BackendUnavailable and any(overload in message for overload in _OVERLOAD):
        kind = BackendBusy
    if kind is not BackendBusy:
        # Capped: a backend message must not carry a whole tensor (an image's bytes) into logs.
        logger.warning("triton error %s: %.500s", status, message)
    return kind(_MESSAGES[kind])


def _item_error(error: wire.ItemError) -> APIError:
    details = error.details
    if error.kind == wire.TOKEN_LIMIT:
        return TokenLimitExceeded(
            item=error.item, tokens=int(details["tokens"]), limit=int(details["limit"])
        )
    reason = str(details.get("reason", "")).split("\n", 1)[0][:REASON_CHARS]
    return ImageRejected(reason, item=error.item)


def _parameters(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("config", config).get("parameters", {})


def _parameter(config: Mapping[str, Any], key: str) -> str:
    try:
        return _parameters(config)[key]["string_value"]
    except KeyError:
        name = config.get("config", config).get("name", "the model")
        raise ValueError(f"the config of {name} has no parameter {key!r}") from None


def serves_images(ensemble: Mapping[str, Any]) -> bool:
    """Whether the ensemble's `modalities` ("text" or "text,image") include images; an ensemble
    exported before images existed has no such parameter."""
    modalities = _parameters(ensemble).get(wire.P_MODALITIES, {}).get("string_value", "text")
    return "image" in {m.strip() for m in modalities.split(",")}


def parse_facts(
    ensemble: Mapping[str, Any],
    tower: Mapping[str, Any],
    image_preprocess: Mapping[str, Any] | None = None,
) -> ModelFacts:
    """`ModelFacts` from the configs Triton loaded (`get_model_config(..., as_json=True)`).

    The ensemble states the model; the text tower's instances say how many parts a request's
    texts go as; the image preprocess states the pixel cap the gateway applies first.
    """
    supports_images = serves_images(ensemble)
    groups = tower.get("config", tower).get("instance_group", [])
    return ModelFacts(
        served_model_name=_parameter(ensemble, wire.P_SERVED_MODEL_NAME),
        native_dimension=int(_parameter(ensemble, wire.P_NATIVE_DIMENSION)),
        max_tokens=int(_parameter(ensemble, wire.P_MAX_TOKENS)),
        fingerprint=_parameter(ensemble, wire.P_FINGERPRINT),
        supports_images=supports_images,
        max_image_pixels=int(_parameter(image_preprocess, wire.P_MAX_PIXELS))
        if supports_images and image_preprocess is not None
        else 0,
        text_tower_instances=max(1, sum(int(g.get("count", 1)) for g in groups)),
    )


def _input(tensor: wire.Tensor, rows: np.ndarray) -> InferInput:
    """One wire tensor of `len(rows)` rows, each `[value]`."""
    infer_input = InferInput(tensor.name, [len(rows), 1], tensor.dtype)
    infer_input.set_data_from_numpy(rows.reshape(len(rows), 1))
    return infer_input


def _strings(values: Sequence[str | bytes]) -> np.ndarray:
    return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=np.object_)


class TritonEmbedder:
    """Embeds through the ensembles on Triton, one Triton request per call.

    Usage: `embedder = TritonEmbedder(gateway.channel.client("127.0.0.1:8001"), timeout_s=30)`
    """

    def __init__(
        self,
        client: InferenceServerClient,
        *,
        timeout_s: float,
        ensemble: str = wire.ENSEMBLE_TEXT,
        image_ensemble: str = wire.ENSEMBLE_IMAGE,
    ) -> None:
        self._client = client
        self._ensemble = ensemble
        self._image_ensemble = image_ensemble
        self._timeout_s = timeout_s
        self._text_outputs = [InferRequestedOutput(t.name) for t in wire.TEXT_OUTPUTS]
        self._image_outputs = [InferRequestedOutput(t.name) for t in wire.IMAGE_OUTPUTS]

    async def _config(self, model: str) -> Mapping[str, Any]:
        with map_triton_errors():
            return await self._client.get_model_config(
                model, as_json=True, client_timeout=self._timeout_s
            )

    async def facts(self) -> ModelFacts:
        ensemble = await self._config(self._ensemble)
        tower = await self._config(wire.TEXT_ENCODER)
        images = serves_images(ensemble)
        image_preprocess = await self._config(wire.IMAGE_PREPROCESS) if images else None
        return parse_facts(ensemble, tower, image_preprocess)

    def swap_client(self, new: InferenceServerClient) -> InferenceServerClient:
        """Send later calls through `new` (gateway/channel.py reopens the channel); return the
        client used until now, which the caller closes once its calls are done."""
        old, self._client = self._client, new
        return old

    async def _infer(
        self, model: str, inputs: list[InferInput], outputs: list, options: EmbedOptions
    ):
        """One Triton call within the options' deadline, tried again on another Triton while
        the one it went to vanished (embeddings are idempotent)."""
        loop = asyncio.get_running_loop()
        timeout_s = options.timeout_s or self._timeout_s
        deadline = loop.time() + timeout_s
        tries = 1
        while True:
            try:
                with map_triton_errors():
                    return await self._client.infer(
                        model,
                        inputs,
                        outputs=outputs,
                        client_timeout=timeout_s,
                        # Work still queued this late would not finish in time: Triton drops it
                        # (an overload answer, 429) rather than compute it for a caller about to
                        # get 504.
                        timeout=int(timeout_s * QUEUE_SHARE * 1_000_000),
                        priority=options.priority,
                    )
            except BackendUnavailable:
                if tries == TRANSPORT_TRIES:
                    raise
                tries += 1
                timeout_s = deadline - loop.time()
                logger.warning("triton call to %s failed in transport; trying another", model)

    def _dimensions(self, rows: int, options: EmbedOptions) -> InferInput:
        return _input(wire.DIMENSIONS, np.full(rows, options.dimensions, dtype=np.int32))

    async def embed_texts(self, texts: Sequence[str], options: EmbedOptions) -> TextEmbeddings:
        n = len(texts)
        inputs = [
            _input(wire.TEXT, _strings(texts)),
            _input(wire.INSTRUCTION, _strings([options.instruction] * n)),
            _input(wire.TRUNCATE, _strings([options.truncate] * n)),
            self._dimensions(n, options),
        ]
        result = await self._infer(self._ensemble, inputs, self._text_outputs, options)
        return TextEmbeddings(
            vectors=np.ascontiguousarray(result.as_numpy(wire.EMBEDDING.name), dtype=np.float32),
            tokens=result.as_numpy(wire.TOKENS.name).reshape(n),
            truncated=result.as_numpy(wire.TRUNCATED.name).reshape(n).astype(bool),
            # One Triton computed the whole answer: every row names the same build.
            build=result.as_numpy(wire.FINGERPRINT.name).reshape(-1)[0].decode(),
        )

    async def embed_image(self, image: bytes, options: EmbedOptions) -> ImageEmbedding:
        inputs = [_input(wire.IMAGE, _strings([image])), self._dimensions(1, options)]
        result = await self._infer(self._image_ensemble, inputs, self._image_outputs, options)
        return ImageEmbedding(
            vector=np.asarray(result.as_numpy(wire.EMBEDDING.name)[0], dtype=np.float32),
            build=result.as_numpy(wire.FINGERPRINT.name).reshape(-1)[0].decode(),
        )

    async def probe(self) -> None:
        await self.embed_texts(["probe"], EmbedOptions(timeout_s=PROBE_TIMEOUT_S))

    async def close(self) -> None:
        await self._client.close()
