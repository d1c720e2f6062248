"""`TritonEmbedder`: the `Embedder` over one `gateway.channel.TritonClient`, and its error map.

It builds Triton's `ModelInferRequest` and reads its `ModelInferResponse` itself, tensors as raw
bytes. Every name it sends or reads is the wire contract's (`model_repository/wire.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import triton_to_np_dtype

from gateway.channel import TritonClient
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


@contextlib.contextmanager
def map_triton_errors() -> Iterator[None]:
    """Translate every Triton, gRPC and transport failure into one `APIError` subclass."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise status_error(exc.code(), exc.details()) from exc
    except TimeoutError as exc:
        raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
    except OSError as exc:
        logger.warning("triton transport error: %s", exc)
        raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc


def status_error(status: grpc.StatusCode, message: str | None) -> APIError:
    """The API's error for a failed Triton call: a declared per-item error, or by status."""
    message = message or ""
    item = wire.ItemError.decode(message)
    if item is not None and status == grpc.StatusCode.INVALID_ARGUMENT:
        return _item_error(item)
    kind = STATUS_ERRORS[status]
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
    """`ModelFacts` from the configs Triton loaded (`TritonClient.model_config`).

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


def _bytes_tensor(values: Iterable[bytes]) -> bytes:
    """A BYTES tensor as Triton reads it raw: each element's length, 4 bytes little-endian, then
    the element (tritonclient's `serialize_byte_tensor`)."""
    return b"".join(len(value).to_bytes(4, "little") + value for value in values)


def _requested(
    tensors: Iterable[wire.Tensor],
) -> list[service_pb2.ModelInferRequest.InferRequestedOutputTensor]:
    return [service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=t.name) for t in tensors]


def _request(
    model: str,
    inputs: Mapping[wire.Tensor, bytes],
    *,
    rows: int,
    outputs: Sequence[service_pb2.ModelInferRequest.InferRequestedOutputTensor],
    priority: int,
) -> service_pb2.ModelInferRequest:
    """A call to `model` with `inputs` of `rows` rows, each `[value]`, given raw."""
    request = service_pb2.ModelInferRequest(
        model_name=model, outputs=outputs, raw_input_contents=inputs.values()
    )
    for tensor in inputs:
        request.inputs.add(name=tensor.name, datatype=tensor.dtype, shape=(rows, 1))
    request.parameters[wire.REQUEST_PRIORITY].uint64_param = priority
    return request


def _raw_output(
    response: service_pb2.ModelInferResponse, tensor: wire.Tensor
) -> tuple[service_pb2.ModelInferResponse.InferOutputTensor, bytes]:
    """`tensor`'s output in `response`, and its raw contents."""
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if output.name == tensor.name:
            return output, raw
    raise KeyError(f"the answer has no output {tensor.name}")


def _array(response: service_pb2.ModelInferResponse, tensor: wire.Tensor) -> np.ndarray:
    """A numeric output, in the dtype and shape Triton answered it with."""
    output, raw = _raw_output(response, tensor)
    return np.frombuffer(raw, dtype=triton_to_np_dtype(output.datatype)).reshape(output.shape)


def _build(response: service_pb2.ModelInferResponse) -> str:
    """The build that computed the answer: FINGERPRINT's first element (one Triton computed the
    whole answer, so every row names the same)."""
    _, raw = _raw_output(response, wire.FINGERPRINT)
    return raw[4 : 4 + int.from_bytes(raw[:4], "little")].decode()


def _dimensions(rows: int, options: EmbedOptions) -> bytes:
    return np.full(
        rows, options.dimensions, dtype=triton_to_np_dtype(wire.DIMENSIONS.dtype)
    ).tobytes()


class TritonEmbedder:
    """Embeds through the ensembles on Triton, one Triton request per call.

    Usage: `embedder = TritonEmbedder(gateway.channel.client("127.0.0.1:8001"), timeout_s=30)`
    """

    def __init__(
        self,
        client: TritonClient,
        *,
        timeout_s: float,
        ensemble: str = wire.ENSEMBLE_TEXT,
        image_ensemble: str = wire.ENSEMBLE_IMAGE,
    ) -> None:
        self._client = client
        self._ensemble = ensemble
        self._image_ensemble = image_ensemble
        self._timeout_s = timeout_s
        self._text_outputs = _requested(wire.TEXT_OUTPUTS)
        self._image_outputs = _requested(wire.IMAGE_OUTPUTS)

    async def _config(self, model: str) -> Mapping[str, Any]:
        with map_triton_errors():
            return await self._client.model_config(model, timeout_s=self._timeout_s)

    async def facts(self) -> ModelFacts:
        ensemble = await self._config(self._ensemble)
        tower = await self._config(wire.TEXT_ENCODER)
        images = serves_images(ensemble)
        image_preprocess = await self._config(wire.IMAGE_PREPROCESS) if images else None
        return parse_facts(ensemble, tower, image_preprocess)

    def swap_client(self, new: TritonClient) -> TritonClient:
        """Send later calls through `new` (gateway/channel.py reopens the channel); return the
        client used until now, which the caller closes once its calls are done."""
        old, self._client = self._client, new
        return old

    async def _infer(
        self, request: service_pb2.ModelInferRequest, options: EmbedOptions
    ) -> service_pb2.ModelInferResponse:
        """One Triton call within the options' deadline, tried again on another Triton while
        the one it went to vanished (embeddings are idempotent)."""
        loop = asyncio.get_running_loop()
        timeout_s = options.timeout_s or self._timeout_s
        deadline = loop.time() + timeout_s
        tries = 1
        while True:
            # Work still queued this late would not finish in time: Triton drops it (an overload
            # answer, 429) rather than compute it for a caller about to get 504.
            queue_timeout_us = int(timeout_s * QUEUE_SHARE * 1_000_000)
            request.parameters[wire.REQUEST_TIMEOUT].int64_param = queue_timeout_us
            try:
                with map_triton_errors():
                    return await self._client.infer(request, timeout_s=timeout_s)
            except BackendUnavailable:
                if tries == TRANSPORT_TRIES:
                    raise
                tries += 1
                timeout_s = deadline - loop.time()
                logger.warning(
                    "triton call to %s failed in transport; trying another", request.model_name
                )

    async def embed_texts(self, texts: Sequence[str], options: EmbedOptions) -> TextEmbeddings:
        n = len(texts)
        inputs = {
            wire.TEXT: _bytes_tensor(text.encode() for text in texts),
            # The same value on every row: encoded once.
            wire.INSTRUCTION: _bytes_tensor([options.instruction.encode()]) * n,
            wire.TRUNCATE: _bytes_tensor([options.truncate.encode()]) * n,
            wire.DIMENSIONS: _dimensions(n, options),
        }
        request = _request(
            self._ensemble, inputs, rows=n, outputs=self._text_outputs, priority=options.priority
        )
        response = await self._infer(request, options)
        return TextEmbeddings(
            vectors=np.ascontiguousarray(_array(response, wire.EMBEDDING), dtype=np.float32),
            tokens=_array(response, wire.TOKENS).reshape(n),
            truncated=_array(response, wire.TRUNCATED).reshape(n).astype(bool),
            build=_build(response),
        )

    async def embed_image(self, image: bytes, options: EmbedOptions) -> ImageEmbedding:
        inputs = {wire.IMAGE: _bytes_tensor([image]), wire.DIMENSIONS: _dimensions(1, options)}
        request = _request(
            self._image_ensemble,
            inputs,
            rows=1,
            outputs=self._image_outputs,
            priority=options.priority,
        )
        response = await self._infer(request, options)
        return ImageEmbedding(
            vector=np.asarray(_array(response, wire.EMBEDDING)[0], dtype=np.float32),
            build=_build(response),
        )

    async def probe(self) -> None:
        await self.embed_texts(["probe"], EmbedOptions(timeout_s=PROBE_TIMEOUT_S))

    async def close(self) -> None:
        await self._client.close()
