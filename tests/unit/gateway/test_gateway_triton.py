from __future__ import annotations

import asyncio
import socket

import grpc
import numpy as np
import pytest
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from gateway import ModelFacts
from gateway.errors import (
    APIError,
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ImageRejected,
    TokenLimitExceeded,
)
from gateway.triton import TritonEmbedder, map_triton_errors, parse_facts

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


def mapped(exc: BaseException) -> APIError:
    with pytest.raises(APIError) as info, map_triton_errors():
        raise exc
    return info.value


def triton_error(status: grpc.StatusCode | None, message: str) -> InferenceServerException:
    # The shape tritonclient.grpc.aio raises: status is str(grpc.StatusCode.X).
    return InferenceServerException(msg=message, status=None if status is None else str(status))


def test_token_limit_message_becomes_422_naming_the_item():
    error = mapped(
        triton_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "in ensemble 'embed_text', TOKEN_LIMIT_EXCEEDED item=2 tokens=301 limit=256",
        )
    )
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


def test_invalid_image_message_becomes_400_with_the_reason():
    error = mapped(
        triton_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "in ensemble 'embed_image', INVALID_IMAGE: cannot identify image file\nTraceback",
        )
    )
    assert isinstance(error, ImageRejected)
    assert (error.status, error.code, error.message) == (
        400,
        "invalid_image",
        "cannot identify image file",
    )
    assert error.at(3).body()["error"] == {
        "message": "input[3]: cannot identify image file",
        "type": "invalid_request_error",
        "param": "input[3]",
        "code": "invalid_image",
    }


def test_invalid_image_reason_is_cut_at_200_characters():
    error = mapped(triton_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IMAGE: " + "x" * 5000))
    assert error.message == "x" * 200


def test_logged_backend_messages_are_capped(caplog):
    mapped(triton_error(grpc.StatusCode.INTERNAL, "y" * 5000))
    assert "y" * 500 in caplog.text and "y" * 501 not in caplog.text


def test_full_queue_is_429_with_retry_after():
    error = mapped(
        triton_error(
            grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size for model 'text_preprocess'"
        )
    )
    assert isinstance(error, BackendBusy)
    assert (error.status, error.headers()) == (429, {"Retry-After": "1"})


def test_deadline_is_504():
    error = mapped(triton_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert (type(error), error.status) == (BackendTimeout, 504)


def test_other_unavailable_is_503():
    error = mapped(triton_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert (type(error), error.status) == (BackendUnavailable, 503)


def test_raw_grpc_errors_are_mapped_like_triton_ones():
    def rpc(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)

    assert mapped(rpc(grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size")).status == 429
    assert mapped(rpc(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")).status == 504
    assert mapped(rpc(grpc.StatusCode.UNAVAILABLE, "Socket closed")).status == 503


def test_transport_errors_are_503_and_timeouts_504():
    assert mapped(ConnectionRefusedError("refused")).status == 503
    assert mapped(TimeoutError()).status == 504


def test_other_errors_are_502_without_internals():
    error = mapped(
        triton_error(
            grpc.StatusCode.INTERNAL, "Traceback /opt/models/embed_postprocess/1/model.py line 9"
        )
    )
    assert (type(error), error.status) == (BackendError, 502)
    assert error.body()["error"]["message"] == "the model backend failed to answer"
    assert mapped(triton_error(None, "model version must be a string")).status == 502


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_every_grpc_status_is_mapped_to_an_api_error(code):
    assert 400 <= mapped(triton_error(code, "x")).status < 600


def test_facts_are_read_from_the_ensemble_parameters():
    assert parse_facts(CONFIG) == ModelFacts(
        served_model_name="epithre-embed", native_dimension=384, max_tokens=256, fingerprint="abc"
    )


@pytest.mark.parametrize(
    ("modalities", "supports_images"),
    [("text,image", True), (" text , image ", True), ("text", False), ("images", False)],
)
def test_modalities_parameter_says_whether_images_are_served(modalities, supports_images):
    parameters = {**CONFIG["config"]["parameters"], "modalities": {"string_value": modalities}}
    facts = parse_facts({"config": {"parameters": parameters}})
    assert facts.supports_images is supports_images


def test_missing_modalities_means_text_only():
    assert parse_facts(CONFIG).supports_images is False


def test_missing_fact_is_named():
    config = {"config": {"parameters": {"served_model_name": {"string_value": "e"}}}}
    with pytest.raises(ValueError, match="'native_dimension'"):
        parse_facts(config)


class StubResult:
    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray:
        return self.outputs[name]


class StubClient:
    """Stands in for InferenceServerClient; records the one infer call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def get_model_config(self, model_name, *, as_json, client_timeout):
        self.calls.append({"model": model_name, "as_json": as_json, "timeout": client_timeout})
        return CONFIG

    async def infer(self, model_name, inputs, *, outputs, client_timeout):
        self.calls.append(
            {
                "model": model_name,
                "inputs": inputs,
                "outputs": [o.name() for o in outputs],
                "timeout": client_timeout,
            }
        )
        n = inputs[0].shape()[0]
        return StubResult(
            {
                "EMBEDDING": np.ones((n, 4), dtype=np.float32) / 2,
                "TOKENS": np.array([[5]] * n, dtype=np.int32),
                "TRUNCATED": np.array([[False], [True]][:n]),
            }
        )

    async def close(self) -> None:
        self.calls.append({"closed": True})


def test_one_infer_call_sends_the_ensemble_tensors_as_n_by_1():
    client = StubClient()
    embedder = TritonEmbedder(
        client, ensemble="embed_text", image_ensemble="embed_image", timeout_s=30.0
    )  # type: ignore[arg-type]
    result = asyncio.run(
        embedder.embed_texts(["kucing", "é"], instruction="q:", truncate="START", dimensions=4)
    )
    (call,) = client.calls
    assert (call["model"], call["timeout"]) == ("embed_text", 30.0)
    assert call["outputs"] == ["EMBEDDING", "TOKENS", "TRUNCATED"]
    tensors = {t.name(): t for t in call["inputs"]}
    assert {n: (t.datatype(), list(t.shape())) for n, t in tensors.items()} == {
        "TEXT": ("BYTES", [2, 1]),
        "INSTRUCTION": ("BYTES", [2, 1]),
        "TRUNCATE": ("BYTES", [2, 1]),
        "DIMENSIONS": ("INT32", [2, 1]),
    }
    assert list(deserialize_bytes_tensor(tensors["TEXT"]._get_content())) == [
        b"kucing",
        "é".encode(),
    ]
    assert list(deserialize_bytes_tensor(tensors["INSTRUCTION"]._get_content())) == [b"q:"] * 2
    assert list(deserialize_bytes_tensor(tensors["TRUNCATE"]._get_content())) == [b"START"] * 2
    assert np.frombuffer(tensors["DIMENSIONS"]._get_content(), dtype=np.int32).tolist() == [4, 4]
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (2, 4)
    assert result.tokens.tolist() == [5, 5] and result.truncated.tolist() == [False, True]


def test_embed_image_sends_one_1_by_1_request_to_the_image_ensemble():
    client = StubClient()
    embedder = TritonEmbedder(
        client, ensemble="embed_text", image_ensemble="embed_img_v2", timeout_s=30.0
    )  # type: ignore[arg-type]
    image = b"\x89PNG\r\n\x1a\n\x00\xff"
    vector = asyncio.run(embedder.embed_image(image, dimensions=16))
    (call,) = client.calls
    assert (call["model"], call["timeout"], call["outputs"]) == (
        "embed_img_v2",
        30.0,
        ["EMBEDDING"],
    )
    tensors = {t.name(): t for t in call["inputs"]}
    assert {n: (t.datatype(), list(t.shape())) for n, t in tensors.items()} == {
        "IMAGE": ("BYTES", [1, 1]),
        "DIMENSIONS": ("INT32", [1, 1]),
    }
    assert list(deserialize_bytes_tensor(tensors["IMAGE"]._get_content())) == [image]
    assert np.frombuffer(tensors["DIMENSIONS"]._get_content(), dtype=np.int32).tolist() == [16]
    assert (vector.dtype, vector.shape, vector.tolist()) == (np.float32, (4,), [0.5] * 4)


def test_probe_embeds_one_text_with_a_5_second_deadline():
    client = StubClient()
    asyncio.run(
        TritonEmbedder(
            client, ensemble="embed_text", image_ensemble="embed_image", timeout_s=30.0
        ).probe()
    )  # type: ignore[arg-type]
    (call,) = client.calls
    assert call["timeout"] == 5.0 and call["inputs"][0].shape() == [1, 1]


def test_facts_come_from_get_model_config_as_json():
    client = StubClient()
    facts = asyncio.run(
        TritonEmbedder(
            client, ensemble="embed_text", image_ensemble="embed_image", timeout_s=3.0
        ).facts()
    )  # type: ignore[arg-type]
    assert facts.native_dimension == 384
    assert client.calls == [{"model": "embed_text", "as_json": True, "timeout": 3.0}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _facts_from(url: str, *, timeout_s: float) -> ModelFacts:
    embedder = TritonEmbedder(
        InferenceServerClient(url),
        ensemble="embed_text",
        image_ensemble="embed_image",
        timeout_s=timeout_s,
    )
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


class LengthEchoClient(StubClient):
    """Answers each text with a vector holding its length, and 3 tokens per character."""

    async def infer(self, model_name, inputs, outputs=None, client_timeout=None):
        self.calls.append({"inputs": inputs})
        texts = [t.decode() for t in deserialize_bytes_tensor(inputs[0]._get_content())]
        if any(len(t) > 6 for t in texts):
            over = next(i for i, t in enumerate(texts) if len(t) > 6)
            raise InferenceServerException(
                f"TOKEN_LIMIT_EXCEEDED item={over} tokens=99 limit=20", status="400"
            )
        n = len(texts)
        return StubResult(
            {
                "EMBEDDING": np.array([[len(t), 0] for t in texts], dtype=np.float32),
                "TOKENS": np.array([[3 * len(t)] for t in texts], dtype=np.int32),
                "TRUNCATED": np.zeros((n, 1), dtype=bool),
            }
        )


def _parted(client: StubClient) -> TritonEmbedder:
    return TritonEmbedder(
        client, ensemble="embed_text", image_ensemble="embed_image", timeout_s=30.0, text_parts=2
    )  # type: ignore[arg-type]


def test_texts_are_dealt_by_length_into_two_parts_and_come_back_in_input_order():
    client = LengthEchoClient()
    texts = ["aaaa", "b", "cccccc", "dd"]
    result = asyncio.run(
        _parted(client).embed_texts(texts, instruction="", truncate="END", dimensions=0)
    )
    sent = [
        [t.decode() for t in deserialize_bytes_tensor(c["inputs"][0]._get_content())]
        for c in client.calls
    ]
    assert sorted(sent) == [["b", "aaaa"], ["dd", "cccccc"]]
    assert result.vectors[:, 0].tolist() == [4, 1, 6, 2]
    assert result.tokens.tolist() == [12, 3, 18, 6]


def test_a_token_limit_in_a_part_names_the_item_in_the_whole_request():
    with pytest.raises(TokenLimitExceeded) as raised:
        asyncio.run(
            _parted(LengthEchoClient()).embed_texts(
                ["a", "toolongtext", "bb", "c"], instruction="", truncate="NONE", dimensions=0
            )
        )
    assert raised.value.item == 1
