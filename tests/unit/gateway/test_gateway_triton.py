from __future__ import annotations

import asyncio
import socket

import grpc
import numpy as np
import orjson
import pytest
from gateway_fakes import grpc_error, invalid_image, token_limit
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from gateway import ModelFacts
from gateway.channel import client
from gateway.embedder import EmbedOptions
from gateway.errors import (
    APIError,
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ImageRejected,
    TokenLimitExceeded,
)
from gateway.triton import (
    PROBE_TIMEOUT_S,
    QUEUE_SHARE,
    STATUS_ERRORS,
    TritonEmbedder,
    map_triton_errors,
    parse_facts,
)
from model_repository import wire

CONFIG = {
    "config": {
        "name": "embed_text",
        "parameters": {
            "served_model_name": {"string_value": "epithre-embed"},
            "native_dimension": {"string_value": "384"},
            "max_tokens": {"string_value": "256"},
            "fingerprint": {"string_value": "abc"},
        },
    }
}
TOWER = {"config": {"name": "text_encoder", "instance_group": [{"kind": "KIND_CPU", "count": 2}]}}
IMAGE_PREPROCESS = {
    "config": {"name": "image_preprocess", "parameters": {"max_pixels": {"string_value": "1000"}}}
}
CONFIGS = {"embed_text": CONFIG, "text_encoder": TOWER, "image_preprocess": IMAGE_PREPROCESS}


def mapped(exc: BaseException) -> APIError:
    with pytest.raises(APIError) as info, map_triton_errors():
        raise exc
    return info.value


def test_token_limit_item_error_becomes_422_naming_the_row():
    error = mapped(grpc_error(grpc.StatusCode.INVALID_ARGUMENT, token_limit(2, 301, 256)))
    assert isinstance(error, TokenLimitExceeded)
    assert (error.status, error.param, error.item, error.tokens, error.limit) == (
        422,
        "input[2]",
        2,
        301,
        256,
    )
    assert error.message == (
        "input[2] has 301 tokens, above the model's limit of 256; shorten it or use truncate "
        "END or START"
    )


def test_invalid_image_item_error_becomes_400_with_the_reason():
    error = mapped(
        grpc_error(
            grpc.StatusCode.INVALID_ARGUMENT, invalid_image("cannot identify image file\nTrace")
        )
    )
    assert isinstance(error, ImageRejected)
    assert (error.status, error.code, error.reason) == (
        400,
        "invalid_image",
        "cannot identify image file",
    )
    assert orjson.loads(error.at([3]).body())["error"] == {
        "message": "input[3]: cannot identify image file",
        "type": "invalid_request_error",
        "param": "input[3]",
        "code": "invalid_image",
    }


def test_an_item_error_naming_a_row_the_request_lacks_is_502():
    error = mapped(grpc_error(grpc.StatusCode.INVALID_ARGUMENT, token_limit(5, 301, 256)))
    assert (type(error.at([0, 1])), error.at([0, 1]).status) == (BackendError, 502)


def test_invalid_image_reason_is_cut_at_200_characters():
    error = mapped(grpc_error(grpc.StatusCode.INVALID_ARGUMENT, invalid_image("x" * 5000)))
    assert error.reason == "x" * 200


def test_invalid_argument_without_an_item_error_is_a_502_bug_report():
    # Triton's own tensor checks and the models' checks of what the gateway sent answer this.
    error = mapped(
        grpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "in ensemble 'embed_text', unexpected shape for input 'TEXT'",
        )
    )
    assert (type(error), error.status) == (BackendError, 502)


def test_an_item_error_under_another_status_is_not_trusted():
    error = mapped(grpc_error(grpc.StatusCode.INTERNAL, token_limit(0, 301, 256)))
    assert (type(error), error.status) == (BackendError, 502)


def test_logged_backend_messages_are_capped(caplog):
    mapped(grpc_error(grpc.StatusCode.INTERNAL, "y" * 5000))
    assert "y" * 500 in caplog.text and "y" * 501 not in caplog.text


def test_queue_timeout_is_overload_429_not_503():
    error = mapped(grpc_error(grpc.StatusCode.UNAVAILABLE, "Request timeout expired"))
    assert (type(error), error.status, error.headers()) == (BackendBusy, 429, {"Retry-After": "1"})


def test_full_queue_is_429_with_retry_after():
    error = mapped(
        grpc_error(
            grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size for model 'text_preprocess'"
        )
    )
    assert isinstance(error, BackendBusy)
    assert (error.status, error.headers()) == (429, {"Retry-After": "1"})


def test_deadline_is_504():
    error = mapped(grpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert (type(error), error.status) == (BackendTimeout, 504)


def test_other_unavailable_is_503():
    error = mapped(grpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert (type(error), error.status) == (BackendUnavailable, 503)


def test_transport_errors_are_503_and_timeouts_504():
    assert mapped(ConnectionRefusedError("refused")).status == 503
    assert mapped(TimeoutError()).status == 504


def test_other_errors_are_502_without_internals():
    error = mapped(
        grpc_error(
            grpc.StatusCode.INTERNAL, "Traceback /opt/models/embed_postprocess/1/model.py line 9"
        )
    )
    assert (type(error), error.status) == (BackendError, 502)
    assert orjson.loads(error.body())["error"]["message"] == "the model backend failed to answer"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.OK, 502),
        (grpc.StatusCode.CANCELLED, 502),
        (grpc.StatusCode.UNKNOWN, 502),
        (grpc.StatusCode.INVALID_ARGUMENT, 502),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.NOT_FOUND, 502),
        (grpc.StatusCode.ALREADY_EXISTS, 502),
        (grpc.StatusCode.PERMISSION_DENIED, 502),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 502),
        (grpc.StatusCode.FAILED_PRECONDITION, 502),
        (grpc.StatusCode.ABORTED, 502),
        (grpc.StatusCode.OUT_OF_RANGE, 502),
        (grpc.StatusCode.UNIMPLEMENTED, 502),
        (grpc.StatusCode.INTERNAL, 502),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DATA_LOSS, 502),
        (grpc.StatusCode.UNAUTHENTICATED, 502),
    ],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_each_grpc_status_has_its_http_status(code, status):
    assert mapped(grpc_error(code, "x")).status == status


def test_the_status_table_names_every_grpc_status():
    assert set(STATUS_ERRORS) == set(grpc.StatusCode)


def test_facts_are_read_from_the_loaded_configs():
    assert parse_facts(CONFIG, TOWER) == ModelFacts(
        served_model_name="epithre-embed",
        native_dimension=384,
        max_tokens=256,
        fingerprint="abc",
        text_tower_instances=2,
    )


@pytest.mark.parametrize(
    ("modalities", "supports_images"),
    [("text,image", True), (" text , image ", True), ("text", False), ("images", False)],
)
def test_modalities_parameter_says_whether_images_are_served(modalities, supports_images):
    parameters = {**CONFIG["config"]["parameters"], "modalities": {"string_value": modalities}}
    facts = parse_facts({"config": {"parameters": parameters}}, TOWER, IMAGE_PREPROCESS)
    assert facts.supports_images is supports_images
    assert facts.max_image_pixels == (1000 if supports_images else 0)


def test_missing_modalities_means_text_only():
    assert parse_facts(CONFIG, TOWER).supports_images is False


def test_missing_fact_is_named():
    config = {"config": {"parameters": {"served_model_name": {"string_value": "e"}}}}
    with pytest.raises(ValueError, match="'native_dimension'"):
        parse_facts(config, TOWER)


def test_a_tower_without_instance_groups_counts_as_one_instance():
    assert parse_facts(CONFIG, {"config": {}}).text_tower_instances == 1


def _answer(n: int) -> service_pb2.ModelInferResponse:
    """The text ensemble's answer for `n` texts (the image ensemble's has the same EMBEDDING and
    FINGERPRINT), its outputs in another order than the request named them."""
    answer = service_pb2.ModelInferResponse(model_name="embed_text")
    for name, datatype, values in (
        ("FINGERPRINT", "BYTES", np.array([[b"b1"]] * n, dtype=np.object_)),
        ("EMBEDDING", "FP32", np.ones((n, 4), dtype=np.float32) / 2),
        ("TRUNCATED", "BOOL", np.array([[False], [True]][:n])),
        ("TOKENS", "INT32", np.array([[5]] * n, dtype=np.int32)),
    ):
        answer.outputs.add(name=name, datatype=datatype, shape=values.shape)
        raw = serialize_byte_tensor(values).item() if datatype == "BYTES" else values.tobytes()
        answer.raw_output_contents.append(raw)
    return answer


class StubClient:
    """Stands in for `gateway.channel.TritonClient`; records every call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def model_config(self, model: str, *, timeout_s: float) -> dict:
        self.calls.append({"model": model, "timeout": timeout_s})
        return CONFIGS[model]

    async def infer(
        self, request: service_pb2.ModelInferRequest, *, timeout_s: float
    ) -> service_pb2.ModelInferResponse:
        parameters = request.parameters
        self.calls.append(
            {
                "model": request.model_name,
                "inputs": {t.name: (t.datatype, list(t.shape)) for t in request.inputs},
                "contents": dict(
                    zip([t.name for t in request.inputs], request.raw_input_contents, strict=True)
                ),
                "outputs": [o.name for o in request.outputs],
                "priority": parameters[wire.REQUEST_PRIORITY].uint64_param,
                "queue_timeout_us": parameters[wire.REQUEST_TIMEOUT].int64_param,
                "timeout": timeout_s,
            }
        )
        return _answer(request.inputs[0].shape[0])

    async def close(self) -> None:
        self.calls.append({"closed": True})


def test_one_infer_call_sends_the_ensemble_tensors_as_n_by_1():
    client = StubClient()
    embedder = TritonEmbedder(client, timeout_s=30.0)  # type: ignore[arg-type]
    options = EmbedOptions(instruction="q:", truncate="START", dimensions=4)
    result = asyncio.run(embedder.embed_texts(["kucing", "é"], options))
    (call,) = client.calls
    assert (call["model"], call["timeout"], call["queue_timeout_us"]) == (
        "embed_text",
        30.0,
        30_000_000 * QUEUE_SHARE,
    )
    assert call["outputs"] == ["EMBEDDING", "TOKENS", "TRUNCATED", "FINGERPRINT"]
    assert call["inputs"] == {
        "TEXT": ("BYTES", [2, 1]),
        "INSTRUCTION": ("BYTES", [2, 1]),
        "TRUNCATE": ("BYTES", [2, 1]),
        "DIMENSIONS": ("INT32", [2, 1]),
    }
    contents = call["contents"]
    assert list(deserialize_bytes_tensor(contents["TEXT"])) == [b"kucing", "é".encode()]
    assert list(deserialize_bytes_tensor(contents["INSTRUCTION"])) == [b"q:"] * 2
    assert list(deserialize_bytes_tensor(contents["TRUNCATE"])) == [b"START"] * 2
    assert np.frombuffer(contents["DIMENSIONS"], dtype=np.int32).tolist() == [4, 4]
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (2, 4)
    assert result.vectors.tolist() == [[0.5] * 4] * 2
    assert result.tokens.tolist() == [5, 5] and result.truncated.tolist() == [False, True]
    assert result.build == "b1"


def test_embed_image_sends_one_1_by_1_request_to_the_image_ensemble():
    client = StubClient()
    embedder = TritonEmbedder(client, timeout_s=30.0, image_ensemble="embed_img_v2")  # type: ignore[arg-type]
    image = b"\x89PNG\r\n\x1a\n\x00\xff"
    answer = asyncio.run(embedder.embed_image(image, EmbedOptions(dimensions=16)))
    (call,) = client.calls
    assert (call["model"], call["timeout"], call["outputs"]) == (
        "embed_img_v2",
        30.0,
        ["EMBEDDING", "FINGERPRINT"],
    )
    assert call["inputs"] == {"IMAGE": ("BYTES", [1, 1]), "DIMENSIONS": ("INT32", [1, 1])}
    assert list(deserialize_bytes_tensor(call["contents"]["IMAGE"])) == [image]
    assert np.frombuffer(call["contents"]["DIMENSIONS"], dtype=np.int32).tolist() == [16]
    vector = answer.vector
    assert (vector.dtype, vector.shape, vector.tolist()) == (np.float32, (4,), [0.5] * 4)
    assert answer.build == "b1"


def test_probe_embeds_one_text_with_its_short_deadline():
    client = StubClient()
    asyncio.run(TritonEmbedder(client, timeout_s=30.0).probe())  # type: ignore[arg-type]
    (call,) = client.calls
    assert call["timeout"] == PROBE_TIMEOUT_S and call["inputs"]["TEXT"] == ("BYTES", [1, 1])
    assert call["queue_timeout_us"] == int(PROBE_TIMEOUT_S * QUEUE_SHARE * 1_000_000)


def test_facts_come_from_the_loaded_model_configs():
    client = StubClient()
    facts = asyncio.run(TritonEmbedder(client, timeout_s=3.0).facts())  # type: ignore[arg-type]
    assert (facts.native_dimension, facts.text_tower_instances) == (384, 2)
    assert client.calls == [
        {"model": "embed_text", "timeout": 3.0},
        {"model": "text_encoder", "timeout": 3.0},
    ]


def test_a_multimodal_ensemble_s_pixel_cap_comes_from_the_image_preprocess():
    client = StubClient()
    parameters = {**CONFIG["config"]["parameters"], "modalities": {"string_value": "text,image"}}
    client_configs = {**CONFIGS, "embed_text": {"config": {"parameters": parameters}}}
    client.model_config = lambda model, **_: _config(client_configs[model])
    facts = asyncio.run(TritonEmbedder(client, timeout_s=3.0).facts())  # type: ignore[arg-type]
    assert (facts.supports_images, facts.max_image_pixels) == (True, 1000)


async def _config(value: dict) -> dict:
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _facts_from(url: str, *, timeout_s: float) -> ModelFacts:
    embedder = TritonEmbedder(client(url), timeout_s=timeout_s)
    try:
        return await embedder.facts()
    finally:
        await embedder.close()


def test_real_client_with_nothing_listening_is_503():
    with pytest.raises(BackendUnavailable):
        asyncio.run(_facts_from(f"127.0.0.1:{_free_port()}", timeout_s=5.0))


def test_real_client_past_its_deadline_is_504():
    # A socket that accepts and never speaks HTTP/2 keeps the call pending until the deadline.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(BackendTimeout):
            asyncio.run(_facts_from(f"127.0.0.1:{port}", timeout_s=0.3))


class VanishingClient(StubClient):
    """Fails its first infer calls with the given (status, message), then answers."""

    def __init__(self, *failures: tuple[grpc.StatusCode, str]) -> None:
        super().__init__()
        self.failures = list(failures)

    async def infer(
        self, request: service_pb2.ModelInferRequest, *, timeout_s: float
    ) -> service_pb2.ModelInferResponse:
        if self.failures:
            status, message = self.failures.pop(0)
            self.calls.append({"failed": message, "timeout": timeout_s})
            raise grpc_error(status, message)
        return await super().infer(request, timeout_s=timeout_s)


SOCKET_CLOSED = (grpc.StatusCode.UNAVAILABLE, "Socket closed")
QUEUE_FULL = (grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size")


def test_a_call_whose_triton_vanished_is_tried_again_within_its_deadline():
    client = VanishingClient(SOCKET_CLOSED, SOCKET_CLOSED)
    embedder = TritonEmbedder(client, timeout_s=30.0)  # type: ignore[arg-type]
    result = asyncio.run(embedder.embed_texts(["kucing"], EmbedOptions()))
    assert [call.get("failed") for call in client.calls] == ["Socket closed"] * 2 + [None]
    assert result.vectors.shape == (1, 4)
    last = client.calls[-1]
    assert 29.0 < last["timeout"] < 30.0
    assert last["queue_timeout_us"] == int(last["timeout"] * QUEUE_SHARE * 1_000_000)


def test_a_call_fails_503_after_three_tries_in_transport():
    client = VanishingClient(SOCKET_CLOSED, SOCKET_CLOSED, SOCKET_CLOSED)
    embedder = TritonEmbedder(client, timeout_s=30.0)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        asyncio.run(embedder.embed_texts(["kucing"], EmbedOptions()))
    assert len(client.calls) == 3


def test_an_overload_answer_is_never_tried_again():
    client = VanishingClient(QUEUE_FULL)
    embedder = TritonEmbedder(client, timeout_s=30.0)  # type: ignore[arg-type]
    with pytest.raises(BackendBusy):
        asyncio.run(embedder.embed_texts(["kucing"], EmbedOptions()))
    assert len(client.calls) == 1


def test_a_call_goes_at_realtime_priority_unless_told_batch():
    client = StubClient()
    embedder = TritonEmbedder(client, timeout_s=30.0)  # type: ignore[arg-type]
    asyncio.run(embedder.embed_texts(["kucing"], EmbedOptions()))
    asyncio.run(embedder.embed_texts(["kucing"], EmbedOptions(priority=wire.PRIORITY_BATCH)))
    assert [call["priority"] for call in client.calls] == [1, 2]
