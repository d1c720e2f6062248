from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from gateway.encoding import encode_rows, render_embeddings
from gateway.protocol import ENCODING_FORMATS, EmbeddingResponse
from gateway.service import Embeddings

VECTORS = np.array([[0.0107, -0.0022, 0.5], [1.0, -1.0, 3.4028235e38]], dtype=np.float32)


def rendered(vectors: np.ndarray, encoding_format: str, **fields: object) -> bytes:
    n = len(vectors)
    result = Embeddings(
        vectors=vectors,
        types=fields.get("types", ["text"] * n),
        truncated=fields.get("truncated", [False] * n),
        prompt_tokens=fields.get("prompt_tokens", 0),
        build="b1",
    )
    return render_embeddings(result, encoding_format=encoding_format, model="epithre-embed")


def render(encoding_format: str) -> dict:
    body = rendered(
        VECTORS, encoding_format, types=["text", "image"], prompt_tokens=7, truncated=[True, False]
    )
    return orjson.loads(body)


@pytest.mark.parametrize("encoding_format", ENCODING_FORMATS)
def test_every_encoding_renders_a_body_the_protocol_declares(encoding_format):
    body = rendered(QUANTIZED, encoding_format, types=["text", "image"], truncated=[True, False])
    response = EmbeddingResponse.model_validate_json(body)
    assert [item.index for item in response.data] == [0, 1]
    assert (response.usage.image_count, response.usage.truncated_count) == (1, 1)


def test_float_body_has_the_contract_shape_types_and_values():
    body = render("float")
    assert body == {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "embedding": body["data"][0]["embedding"],
                "index": 0,
                "type": "text",
                "truncated": True,
            },
            {
                "object": "embedding",
                "embedding": body["data"][1]["embedding"],
                "index": 1,
                "type": "image",
                "truncated": False,
            },
        ],
        "model": "epithre-embed",
        "usage": {"prompt_tokens": 7, "total_tokens": 7, "image_count": 1, "truncated_count": 1},
    }
    decoded = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_array_equal(decoded, VECTORS)


def test_base64_decodes_as_little_endian_float32_to_the_same_floats():
    body = render("base64")
    for row, item in zip(VECTORS, body["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, row)


def test_big_endian_or_float64_input_is_sent_as_little_endian_float32():
    body = orjson.loads(rendered(VECTORS.astype(">f8"), "base64"))
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, VECTORS[0])


# Hand-made rows; the expected outputs below were worked out by hand from the contract's table.
QUANTIZED = np.array(
    [
        [0.5, -0.25, 0.001, -1.0, 0.75, 0.0, 0.3, -0.3, 0.9],
        [-0.1] * 9,
    ],
    dtype=np.float32,
)


def quantized(encoding_format: str) -> list[list[int]]:
    body = orjson.loads(rendered(QUANTIZED, encoding_format, types=["text", "image"]))
    return [item["embedding"] for item in body["data"]]


def test_int8_is_127_v_rounded_and_clipped():
    assert quantized("int8") == [
        [64, -32, 0, -127, 95, 0, 38, -38, 114],
        [-13] * 9,
    ]


def test_int8_clips_to_plus_minus_127_never_minus_128():
    rows = encode_rows(np.array([[1.5, -1.5, 1.0, -1.0]], dtype=np.float32), "int8")
    assert rows.tolist() == [[127, -127, 127, -127]]


def test_uint8_is_int8_plus_128():
    assert quantized("uint8") == [
        [192, 96, 128, 1, 223, 128, 166, 90, 242],
        [115] * 9,
    ]


def test_ubinary_packs_sign_bits_first_dimension_high_and_pads_the_last_byte():
    # Signs 1,0,1,0,1,0,1,0 | 1 -> 0b10101010, 0b10000000; zero counts as not positive.
    assert quantized("ubinary") == [[170, 128], [0, 0]]


def test_binary_is_ubinary_minus_128():
    assert quantized("binary") == [[42, 0], [-128, -128]]
