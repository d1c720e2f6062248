"""The response body of POST /v1/embeddings, in either `encoding_format`."""

from __future__ import annotations

import base64

import numpy as np
import orjson

from gateway.schema import EncodingFormat

# OpenAI clients decode base64 embeddings as little-endian float32 (numpy dtype "<f4").
WIRE_DTYPE = np.dtype("<f4")


def render_embeddings(
    vectors: np.ndarray,
    *,
    types: list[str],
    encoding_format: EncodingFormat,
    model: str,
    prompt_tokens: int,
    truncated_count: int,
) -> bytes:
    """Serialize rows of `vectors` in input order (`types[i]` "text" or "image") with `usage`.

    Usage: `body = render_embeddings(v, types=["text"], encoding_format="float", model="m",
    prompt_tokens=3, truncated_count=0)`
    """
    rows = np.ascontiguousarray(vectors, dtype=WIRE_DTYPE)
    data = [
        {
            "object": "embedding",
            "embedding": _encode(row, encoding_format),
            "index": i,
            "type": kind,
        }
        for i, (row, kind) in enumerate(zip(rows, types, strict=True))
    ]
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "image_count": types.count("image"),
            "truncated_count": truncated_count,
        },
    }
    # OPT_SERIALIZE_NUMPY writes each row in C, with no Python loop over the floats.
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _encode(row: np.ndarray, encoding_format: EncodingFormat) -> np.ndarray | str:
    if encoding_format == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row
