"""The response body of POST /v1/embeddings, in any `encoding_format`.

Rendered straight from numpy with orjson: building the declared `EmbeddingResponse` objects for
64 x 384 floats would cost far more. Tests validate these bodies against the declaration.
"""

from __future__ import annotations

import base64

import numpy as np
import orjson

from gateway.protocol import EncodingFormat
from gateway.service import Embeddings

# OpenAI clients decode base64 embeddings as little-endian float32 (numpy dtype "<f4").
WIRE_DTYPE = np.dtype("<f4")
# Scalar quantization maps the normalized range [-1, 1] onto [-127, 127]; -128 is never used,
# so that int8 stays symmetric around zero (Cohere's definition).
INT8_SCALE = 127


def render_embeddings(result: Embeddings, *, encoding_format: EncodingFormat, model: str) -> bytes:
    """Serialize `result`'s rows in input order, each with its type and truncated flag, and usage.

    `truncated` is an extra field on each item that OpenAI clients ignore; `usage.truncated_count`
    counts the items that have it set. usage.total_tokens is prompt_tokens: nothing is generated.

    Usage: `body = render_embeddings(result, encoding_format="float", model="epithre-embed")`
    """
    rows = encode_rows(np.ascontiguousarray(result.vectors, dtype=WIRE_DTYPE), encoding_format)
    data = [
        {"object": "embedding", "embedding": row, "index": i, "type": kind, "truncated": cut}
        for i, (row, kind, cut) in enumerate(zip(rows, result.types, result.truncated, strict=True))
    ]
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "total_tokens": result.prompt_tokens,
            "image_count": result.image_count,
            "truncated_count": result.truncated_count,
        },
    }
    # OPT_SERIALIZE_NUMPY writes each row in C, with no Python loop over the values.
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_rows(rows: np.ndarray, encoding_format: EncodingFormat) -> np.ndarray | list[str]:
    """float32 rows [n, d], already normalized and truncated -> one encoded row per item.

    Usage: `encode_rows(np.array([[0.5, -0.25]], dtype="<f4"), "int8")` -> `[[64, -32]]`
    """
    if encoding_format == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    if encoding_format == "float":
        return rows
    if encoding_format in ("int8", "uint8"):
        # np.rint rounds half to even, as numpy.round in the contract's formula does.
        int8 = np.clip(np.rint(rows * INT8_SCALE), -INT8_SCALE, INT8_SCALE).astype(np.int8)
        return int8 if encoding_format == "int8" else (int8.astype(np.int16) + 128).astype(np.uint8)
    # One sign bit per dimension, first dimension in the high bit, zero-padded to whole bytes.
    ubinary = np.packbits(rows > 0, axis=-1)
    if encoding_format == "ubinary":
        return ubinary
    return (ubinary.astype(np.int16) - 128).astype(np.int8)
