"""The HTTP endpoints, declared once: thin shells (authenticate, read, parse, call, render).

`ENDPOINTS` is what the app routes and what the OpenAPI document describes.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from gateway.batches.routes import BATCH_ENDPOINTS
from gateway.body import read_json
from gateway.disconnect import unless_disconnected
from gateway.encoding import render_embeddings
from gateway.endpoint import JSON, Endpoint, json_response
from gateway.errors import (
    APIError,
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BodyTooLarge,
    Draining,
    GatewayBusy,
    InvalidJSON,
    InvalidRequest,
    ItemTooLarge,
    ModelNotFound,
    ModelUpgrading,
    Overloaded,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    error_response,
)
from gateway.files.routes import FILE_ENDPOINTS
from gateway.protocol import EmbeddingRequest, EmbeddingResponse, Model, ModelList, Status
from gateway.validation import parse_request

logger = logging.getLogger("gateway")
# Readiness counts an embedding answered this recently as proof, instead of probing.
RECENT_ANSWER_S = 2.0
FINGERPRINT_HEADER = "X-Model-Fingerprint"
METRICS_PATH = "/metrics"


async def embeddings(request: Request) -> Response:
    state = request.app.state
    # Authentication and the request budget come first, so neither an unauthenticated nor a
    # rate-limited client can make us read 25 MB.
    caller = state.api_keys.check(request.headers)
    await state.limiter.admit(caller)
    payload = await read_json(request, state.body_limits)
    body = parse_request(payload, state.request_type)
    result = await unless_disconnected(request, state.service.embed(body, caller=caller))
    # Counts only, for the access log; it must never see the inputs themselves.
    request.state.usage = {
        "items": len(body.input),
        "images": result.image_count,
        "tokens": result.prompt_tokens,
    }
    state.metrics.observe_embeddings(
        items=len(body.input),
        tokens=result.prompt_tokens,
        truncated=result.truncated_count,
        images=result.image_count,
    )
    # The real cost is known only now, so the answer is charged after the fact and an
    # overdraft refuses the key's next request, not this one.
    limit_headers = await state.limiter.charge(caller, tokens=result.prompt_tokens)
    return Response(
        render_embeddings(
            result, encoding_format=body.encoding_format, model=state.facts.served_model_name
        ),
        media_type=JSON,
        # Two builds can share a served name; the fingerprint says which one made these vectors
        # (during a rolling upgrade, not always the one this gateway read at start-up).
        headers={FINGERPRINT_HEADER: result.build, **limit_headers},
    )


async def models(request: Request) -> Response:
    state = request.app.state
    state.api_keys.check(request.headers)
    # The build of the latest answer: once an upgrade is done, the one now served, not the one
    # this gateway found at start-up. Each embeddings response names its own in its header.
    fingerprint = state.service.builds.latest or state.facts.fingerprint
    model = Model(
        id=state.facts.served_model_name,
        object="model",
        created=0,
        owned_by="epithre",
        fingerprint=fingerprint,
    )
    return json_response(ModelList(object="list", data=[model]))


async def live(request: Request) -> Response:
    return json_response(Status(status="live"))


async def ready(request: Request) -> Response:
    state = request.app.state
    # Set by DrainingServer on SIGTERM: refuse new traffic before the probe, which may still pass.
    if state.draining:
        return error_response(Draining("the gateway is shutting down"), request)
    service = state.service
    if service.breaker.is_open:
        return error_response(BackendUnavailable("the model backend is unavailable"), request)
    # Busy is not unready: an answer within the last moments proves the whole path, and work in
    # flight gets its answer or fails by its own deadline, which the breaker counts. A probe
    # would only queue behind that work; timing out there, it would open the circuit on a
    # backend that is merely slow, turning overload into 503s for everyone.
    answer = Status(status="ready", builds=service.builds.recent())
    if service.admission.busy or service.admission.answered_within(RECENT_ANSWER_S):
        return json_response(answer)
    # Triton's own health can stay green with a dead Python stub; only a real embedding proves it.
    try:
        await state.embedder.probe()
    except BackendBusy:
        return json_response(answer)  # a full queue answered: Triton is alive
    except Exception as exc:
        logger.warning("readiness probe failed: %r", exc)
        if isinstance(exc, (BackendUnavailable, BackendTimeout)):
            service.breaker.failed(at_once=True)
        return error_response(BackendUnavailable("the model backend is not ready"), request)
    return json_response(answer)


async def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type=JSON)


ENDPOINTS = (
    Endpoint(
        "/v1/embeddings",
        "POST",
        embeddings,
        operation_id="createEmbeddings",
        summary="Embed texts and images",
        answer="One embedding per input item, in input order.",
        response=EmbeddingResponse,
        request=EmbeddingRequest,
        errors=(
            InvalidRequest,
            ModelNotFound,
            InvalidJSON,
            Unauthorized,
            RequestTimeout,
            BodyTooLarge,
            ItemTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            RateLimited,
            Overloaded,
            APIError,
            BackendError,
            BackendUnavailable,
            ModelUpgrading,
            GatewayBusy,
            BackendTimeout,
        ),
    ),
    Endpoint(
        "/v1/models",
        "GET",
        models,
        operation_id="listModels",
        summary="The served model",
        answer="The served model (OpenAI shape) with its fingerprint.",
        response=ModelList,
        errors=(Unauthorized,),
    ),
    Endpoint(
        "/health/live",
        "GET",
        live,
        operation_id="live",
        summary="Liveness",
        answer="The process answers.",
        response=Status,
        authenticated=False,
    ),
    Endpoint(
        "/health/ready",
        "GET",
        ready,
        operation_id="ready",
        summary="Readiness: the backend embeds a probe",
        answer="Ready for traffic; `builds` names the builds of the model seen answering lately.",
        response=Status,
        errors=(Draining, BackendUnavailable),
        authenticated=False,
    ),
    Endpoint(METRICS_PATH, "GET", metrics, authenticated=False),
    Endpoint("/openapi.json", "GET", openapi, authenticated=False),
    *FILE_ENDPOINTS,
    *BATCH_ENDPOINTS,
)
