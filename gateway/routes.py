"""The HTTP endpoints: thin shells around the schema, the embedder and the encoder."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import read_json
from gateway.disconnect import unless_disconnected
from gateway.embedder import Embedder
from gateway.encoding import render_embeddings
from gateway.errors import (
    BackendError,
    BackendUnavailable,
    Draining,
    ImageRejected,
    TokenLimitExceeded,
    error_response,
)
from gateway.schema import EmbeddingRequest, parse_request

logger = logging.getLogger("gateway")
FINGERPRINT_HEADER = "X-Model-Fingerprint"


def _json(value: object, *, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


async def embeddings(request: Request) -> Response:
    state = request.app.state
    # Authentication and the request budget come first, so neither an unauthenticated nor a
    # rate-limited client can make us read 25 MB.
    caller = state.api_keys.check(request.headers)
    state.limiter.admit(caller)
    payload = await read_json(request, max_bytes=state.settings.max_body_bytes)
    body = parse_request(payload, facts=state.facts, settings=state.settings)
    texts_at, images_at = body.text_positions, body.image_positions
    # All texts in one Triton request, every image in its own, all in flight at once.
    jobs = [_embed_texts(state.embedder, body, texts_at)] if texts_at else []
    jobs += [_embed_image(state.embedder, body, i) for i in images_at]
    results = await unless_disconnected(request, asyncio.gather(*jobs, return_exceptions=True))
    # Errors surface in a fixed order (the text batch, then images by position), not by timing.
    for result in results:
        if isinstance(result, BaseException):
            raise result
    vectors = np.empty((len(body.input), body.dimensions), dtype=np.float32)
    prompt_tokens, truncated = 0, np.array(body.char_truncated)
    if texts_at:
        text_result = results[0]
        vectors[texts_at] = text_result.vectors
        prompt_tokens = int(text_result.tokens.sum())
        truncated[texts_at] |= text_result.truncated
    for position, vector in zip(images_at, results[len(results) - len(images_at) :], strict=True):
        vectors[position] = vector
    truncated_count = int(np.count_nonzero(truncated))
    # Counts only, for the access log; it must never see the inputs themselves.
    request.state.usage = {
        "items": len(body.input),
        "images": len(images_at),
        "tokens": prompt_tokens,
    }
    state.metrics.observe_embeddings(
        items=len(body.input),
        tokens=prompt_tokens,
        truncated=truncated_count,
        images=len(images_at),
    )
    # The real cost (usage.total_tokens is prompt_tokens) is known only now, so the answer is
    # charged after the fact and an overdraft refuses the key's next request, not this one.
    limit_headers = state.limiter.charge(caller, tokens=prompt_tokens)
    return Response(
        render_embeddings(
            vectors,
            types=["image" if isinstance(item, bytes) else "text" for item in body.input],
            encoding_format=body.encoding_format,
            model=state.facts.served_model_name,
            prompt_tokens=prompt_tokens,
            truncated=truncated.tolist(),
        ),
        media_type="application/json",
        # Two builds can share a served name; the fingerprint says which one made these vectors.
        headers={FINGERPRINT_HEADER: state.facts.fingerprint, **limit_headers},
    )


async def _embed_texts(embedder: Embedder, body: EmbeddingRequest, positions: list[int]):
    try:
        return await embedder.embed_texts(
            [body.input[i] for i in positions],
            instruction=body.instruction,
            truncate=body.truncate,
            dimensions=body.dimensions,
        )
    except TokenLimitExceeded as error:
        # Triton counts within the text batch; the client counts within its whole `input`.
        if not 0 <= error.item < len(positions):
            logger.warning(
                "token limit error names item %d of %d texts", error.item, len(positions)
            )
            raise BackendError("the model backend failed to answer") from error
        raise error.at(positions[error.item]) from None


async def _embed_image(embedder: Embedder, body: EmbeddingRequest, position: int) -> np.ndarray:
    try:
        return await embedder.embed_image(body.input[position], dimensions=body.dimensions)
    except ImageRejected as error:
        raise error.at(position) from None


async def models(request: Request) -> Response:
    state = request.app.state
    state.api_keys.check(request.headers)
    model = {
        "id": state.facts.served_model_name,
        "object": "model",
        "created": 0,
        "owned_by": "epithre",
        # An extra field OpenAI clients ignore: sha256 of the exported files, one per build.
        "fingerprint": state.facts.fingerprint,
    }
    return _json({"object": "list", "data": [model]})


async def live(request: Request) -> Response:
    return _json({"status": "live"})


async def ready(request: Request) -> Response:
    # Set by DrainingServer on SIGTERM: refuse new traffic before the probe, which may still pass.
    if request.app.state.draining:
        return error_response(Draining("the gateway is shutting down"), request)
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
