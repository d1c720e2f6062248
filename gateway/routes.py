"""The HTTP endpoints: thin shells around the schema, the embedder and the encoder."""

from __future__ import annotations

import logging

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import read_json
from gateway.encoding import render_embeddings
from gateway.errors import BackendUnavailable, error_response
from gateway.schema import parse_request

logger = logging.getLogger("gateway")


def _json(value: object, *, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


async def embeddings(request: Request) -> Response:
    state = request.app.state
    # Authentication comes first so an unauthenticated client cannot make us read 25 MB.
    state.api_keys.check(request.headers)
    payload = await read_json(request, max_bytes=state.settings.max_body_bytes)
    body = parse_request(payload, facts=state.facts, settings=state.settings)
    # One backend call for all texts; the Triton batch index is the API index because every
    # item is a text sent in order, so a TokenLimitExceeded already names the right input[i].
    result = await state.embedder.embed_texts(
        list(body.input),
        instruction=body.instruction,
        truncate=body.truncate,
        dimensions=body.dimensions,
    )
    prompt_tokens = int(result.tokens.sum())
    truncated_count = int(np.count_nonzero(np.asarray(body.char_truncated) | result.truncated))
    state.metrics.observe_embeddings(
        items=len(body.input), tokens=prompt_tokens, truncated=truncated_count
    )
    return Response(
        render_embeddings(
            result.vectors,
            encoding_format=body.encoding_format,
            model=state.facts.served_model_name,
            prompt_tokens=prompt_tokens,
            truncated_count=truncated_count,
        ),
        media_type="application/json",
    )


async def models(request: Request) -> Response:
    state = request.app.state
    state.api_keys.check(request.headers)
    model = {
        "id": state.facts.served_model_name,
        "object": "model",
        "created": 0,
        "owned_by": "epithre",
    }
    return _json({"object": "list", "data": [model]})


async def live(request: Request) -> Response:
    return _json({"status": "live"})


async def ready(request: Request) -> Response:
    # Triton's own health can stay green with a dead Python stub; only a real embedding proves it.
    try:
        await request.app.state.embedder.probe()
    except Exception as exc:
        logger.warning("readiness probe failed: %r", exc)
        return error_response(BackendUnavailable("the model backend is not ready"), request)
    return _json({"status": "ready"})


async def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
