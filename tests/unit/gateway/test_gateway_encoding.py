from __future__ import annotations

import base64

import numpy as np
import orjson

from gateway.encoding import render_embeddings

VECTORS = np.array([[0.0107, -0.0022, 0.5], [1.0, -1.0, 3.4028235e38]], dtype=np.float32)


def render(encoding_format: str) -> dict:
    return orjson.loads(
        render_embeddings(
            VECTORS,
            types=["text", "image"],
            encoding_format=encoding_format,
            model="epithre-embed",
            prompt_tokens=7,
            truncated_count=1,
        )
    )


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
            },
            {
                "object": "embedding",
                "embedding": body["data"][1]["embedding"],
                "index": 1,
                "type": "image",
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
    body = orjson.loads(
        render_embeddings(
            VECTORS.astype(">f8"),
            types=["text"] * len(VECTORS),
            encoding_format="base64",
            model="m",
            prompt_tokens=0,
            truncated_count=0,
        )
    )
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, VECTORS[0])
