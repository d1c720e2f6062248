"""POST /v1/embeddings with image items: order, types, usage, limits, fan-out and error mapping."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pytest
from gateway_fakes import (
    MULTIMODAL,
    FakeEmbedder,
    b64,
    encoded_image,
    error_body,
    fake_tokens,
    fake_vector,
    invalid_image,
    serve,
    token_limit,
    triton_failure,
)
from PIL import Image

from gateway.encoding import encode_rows
from model_repository import wire

PNG = encoded_image()
JPEG = encoded_image("JPEG")
RAW = {"type": "image", "image": b64(PNG)}
DATA_URI = {"type": "image", "image_url": f"data:image/jpeg;base64,{b64(JPEG)}"}
CHAT = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}}


def post(client, items, **body):
    return client.post("/v1/embeddings", json={"model": "epithre-embed", "input": items, **body})


@pytest.fixture
def multimodal():
    with serve(FakeEmbedder(facts_value=MULTIMODAL)) as running:
        yield running


def test_mixed_input_keeps_input_order_with_types_and_image_count(multimodal):
    client, _ = multimodal
    response = post(client, ["teks", RAW, DATA_URI, "lagi", CHAT])
    assert response.status_code == 200
    body = response.json()
    assert [(d["index"], d["type"]) for d in body["data"]] == [
        (0, "text"),
        (1, "image"),
        (2, "image"),
        (3, "text"),
        (4, "image"),
    ]
    expected = [fake_vector("teks"), fake_vector(PNG.hex()), fake_vector(JPEG.hex())]
    expected += [fake_vector("lagi"), fake_vector(PNG.hex())]
    for item, vector in zip(body["data"], expected, strict=True):
        np.testing.assert_array_equal(np.array(item["embedding"], dtype=np.float32), vector)
    tokens = fake_tokens("teks") + fake_tokens("lagi")
    assert body["usage"] == {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "image_count": 3,
        "truncated_count": 0,
    }


def test_texts_go_as_one_call_and_each_image_as_its_own_with_the_same_dimensions(multimodal):
    client, embedder = multimodal
    post(client, ["a", RAW, "b", DATA_URI], dimensions=16)
    assert embedder.calls == [
        {
            "texts": ["a", "b"],
            "instruction": "",
            "truncate": "END",
            "dimensions": 16,
            "priority": wire.PRIORITY_REALTIME,
        },
        {"image": PNG, "dimensions": 16},
        {"image": JPEG, "dimensions": 16},
    ]


def test_image_only_input_makes_no_text_call(multimodal):
    client, embedder = multimodal
    body = post(client, [RAW]).json()
    assert embedder.calls == [{"image": PNG, "dimensions": 384}]
    assert body["usage"] == {
        "prompt_tokens": 0,
        "total_tokens": 0,
        "image_count": 1,
        "truncated_count": 0,
    }


@dataclass
class GatedEmbedder(FakeEmbedder):
    """Every call waits until `expected` calls are in flight together, or times out."""

    expected: int = 0
    in_flight: int = 0
    most_in_flight: int = 0

    async def _enter(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        async with asyncio.timeout(2):
            while self.in_flight < self.expected:
                await asyncio.sleep(0.001)

    async def embed_texts(self, texts, options):
        await self._enter()
        return await super().embed_texts(texts, options)

    async def embed_image(self, image, options):
        await self._enter()
        return await super().embed_image(image, options)


def test_all_images_and_the_text_batch_are_in_flight_at_once():
    embedder = GatedEmbedder(facts_value=MULTIMODAL, expected=4)
    with serve(embedder) as (client, _):
        response = post(client, [RAW, "a", CHAT, DATA_URI, "b"])
    assert response.status_code == 200
    assert embedder.most_in_flight == 4


def test_an_image_on_a_text_only_model_is_400_not_supported():
    with serve() as (client, embedder):
        response = post(client, ["a", RAW])
    assert response.status_code == 400
    assert response.json() == error_body(
        "input[1]: image input is not supported by epithre-embed, which embeds text only",
        type="invalid_request_error",
        param="input[1]",
        code="invalid_value",
    )
    assert embedder.calls == []


def test_8_images_with_64_texts_pass_and_a_9th_image_is_400(multimodal):
    client, _ = multimodal
    assert post(client, ["t"] * 64 + [RAW] * 8).status_code == 200
    response = post(client, ["t", *[RAW] * 9])
    assert response.status_code == 400
    assert response.json() == error_body(
        "input has 9 image items; at most 8 are allowed",
        type="invalid_request_error",
        param="input",
        code="invalid_value",
    )


def test_an_image_over_the_byte_limit_is_413_naming_it():
    with serve(FakeEmbedder(facts_value=MULTIMODAL), max_image_bytes=len(PNG) - 1) as (client, e):
        response = post(client, ["a", RAW])
    assert response.status_code == 413
    assert response.json() == error_body(
        f"input[1] is over the limit of {len(PNG) - 1} bytes",
        type="invalid_request_error",
        param="input[1]",
        code="item_too_large",
    )
    assert e.calls == []


def test_the_pixel_limit_comes_from_the_model_and_reaches_pillow():
    facts = dataclasses.replace(MULTIMODAL, max_image_pixels=47)
    with serve(FakeEmbedder(facts_value=facts)) as (client, _):
        response = post(client, ["a", RAW])  # 8 x 6 = 48 pixels
        assert Image.MAX_IMAGE_PIXELS == 47
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "input[1]: 8x6 is over the limit of 47 pixels"


def test_a_bad_image_is_400_naming_it_and_nothing_is_embedded(multimodal):
    client, embedder = multimodal
    response = post(client, ["a", "b", {"type": "image", "image": b64(b"not an image")}])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[2]"
    assert embedder.calls == []


def test_instruction_with_an_image_is_422_naming_instruction(multimodal):
    client, embedder = multimodal
    response = post(client, ["a", RAW], instruction="find:")
    assert response.status_code == 422
    assert response.json() == error_body(
        "instruction applies to text only; remove it or the images",
        type="invalid_request_error",
        param="instruction",
        code="input_too_long",
    )
    assert embedder.calls == []


def test_an_image_triton_cannot_read_is_400_naming_its_input_index():
    error = triton_failure(
        "StatusCode.INVALID_ARGUMENT",
        invalid_image("cannot identify image file"),
    )
    with serve(FakeEmbedder(facts_value=MULTIMODAL, image_error=error)) as (client, _):
        response = post(client, ["a", "b", RAW])
    assert response.status_code == 400
    assert response.json() == error_body(
        "input[2]: cannot identify image file",
        type="invalid_request_error",
        param="input[2]",
        code="invalid_image",
    )


def test_a_full_queue_on_an_image_is_429():
    error = triton_failure("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")
    with serve(FakeEmbedder(facts_value=MULTIMODAL, image_error=error)) as (client, _):
        response = post(client, ["a", RAW])
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")


def test_the_token_limit_item_is_remapped_from_the_text_batch_to_the_input_index():
    error = triton_failure("StatusCode.INVALID_ARGUMENT", token_limit(1, 300, 256))
    with serve(FakeEmbedder(facts_value=MULTIMODAL, error=error)) as (client, _):
        response = post(client, [RAW, "a", CHAT, "b"], truncate="NONE")
    assert response.status_code == 422
    assert response.json() == error_body(
        "input[3] has 300 tokens, above the model's limit of 256; shorten it or use truncate "
        "END or START",
        type="invalid_request_error",
        param="input[3]",
        code="input_too_long",
    )


def test_a_token_limit_item_outside_the_text_batch_is_a_502():
    error = triton_failure("StatusCode.INVALID_ARGUMENT", token_limit(2, 300, 256))
    with serve(FakeEmbedder(facts_value=MULTIMODAL, error=error)) as (client, _):
        response = post(client, [RAW, "a", "b"], truncate="NONE")
    assert response.status_code == 502
    assert response.json()["error"]["param"] is None


def test_base64_encoding_covers_images_too(multimodal):
    client, _ = multimodal
    body = post(client, ["a", RAW], encoding_format="base64").json()
    decoded = np.frombuffer(base64.b64decode(body["data"][1]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, fake_vector(PNG.hex()))
    assert body["data"][1]["type"] == "image"


def test_image_bytes_and_base64_never_reach_errors_or_logs(caplog):
    bad = b64(b"GARBAGE!" * 64)
    error = triton_failure("StatusCode.INTERNAL", "image_preprocess failed")
    caplog.set_level(logging.DEBUG)
    with serve(FakeEmbedder(facts_value=MULTIMODAL, image_error=error)) as (client, _):
        responses = [
            post(client, [{"type": "image", "image": bad}]),
            post(client, [{"type": "image", "image_url": "https://x/" + bad}]),
            post(client, [RAW]),
        ]
    assert [r.status_code for r in responses] == [400, 400, 502]
    for fragment in (bad[:16], b64(PNG)[:16], repr(PNG[:16])):
        assert fragment not in caplog.text
        assert all(fragment not in r.text for r in responses)


@pytest.mark.parametrize(
    ("encoding_format", "length"), [("int8", 12), ("uint8", 12), ("ubinary", 2), ("binary", 2)]
)
def test_quantized_encodings_combine_with_dimensions_and_mixed_input(
    multimodal, encoding_format, length
):
    client, _ = multimodal
    body = post(client, ["a", RAW], dimensions=12, encoding_format=encoding_format).json()
    expected = encode_rows(
        np.stack([fake_vector("a", 12), fake_vector(PNG.hex(), 12)]), encoding_format
    )
    assert [d["embedding"] for d in body["data"]] == expected.tolist()
    assert [len(d["embedding"]) for d in body["data"]] == [length, length]
    assert [d["type"] for d in body["data"]] == ["text", "image"]
