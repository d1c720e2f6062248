"""The Batch API's HTTP endpoints: thin shells (authenticate, parse, call the store, render).

Every route is by owner: another key's batch, and another key's input file, answer 404.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from gateway.batches.objects import Batch, BatchList, CreateBatch
from gateway.body import read_json
from gateway.endpoint import Endpoint, json_response
from gateway.errors import (
    BatchNotCancellable,
    BodyTooLarge,
    InvalidJSON,
    InvalidRequest,
    RequestTimeout,
    ResourceNotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from gateway.params import parse_params

# A batch's input must be uploaded for it: an output file cannot be fed back as input.
INPUT_PURPOSE = "batch"


class BatchListQuery(BaseModel):
    """The query of GET /v1/batches."""

    model_config = ConfigDict(extra="ignore")

    after: str | None = Field(None, description="A batch id: the page starts after it.")
    limit: int = Field(20, ge=1, le=100, description="Batches per page, newest first.")


async def create_batch(request: Request) -> Response:
    state = request.app.state
    caller = state.api_keys.check(request.headers)
    payload = await read_json(request, state.body_limits)
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    body = parse_params(CreateBatch, payload)
    try:
        file = await state.files.get(caller, body.input_file_id)
    except ResourceNotFound as missing:
        raise ResourceNotFound(missing.message, param="input_file_id") from None
    if file.purpose != INPUT_PURPOSE:
        raise InvalidRequest(
            f"{file.id} has purpose {file.purpose!r}: a batch's input file is uploaded with "
            f"purpose {INPUT_PURPOSE!r}",
            param="input_file_id",
        )
    batch = await state.batches.create(
        caller,
        body,
        model=state.facts.served_model_name,
        window_s=state.settings.batch_completion_window_s,
    )
    return json_response(batch)


async def get_batch(request: Request) -> Response:
    state = request.app.state
    caller = state.api_keys.check(request.headers)
    return json_response(await state.batches.get(caller, request.path_params["batch_id"]))


async def list_batches(request: Request) -> Response:
    state = request.app.state
    caller = state.api_keys.check(request.headers)
    query = parse_params(BatchListQuery, request.query_params)
    return json_response(await state.batches.page(caller, after=query.after, limit=query.limit))


async def cancel_batch(request: Request) -> Response:
    state = request.app.state
    caller = state.api_keys.check(request.headers)
    return json_response(await state.batches.cancel(caller, request.path_params["batch_id"]))


BATCH_ENDPOINTS = (
    Endpoint(
        "/v1/batches",
        "POST",
        create_batch,
        operation_id="createBatch",
        summary="Create a batch of embedding requests from an uploaded file",
        answer="The batch, validating; poll it until it ends.",
        response=Batch,
        request=CreateBatch,
        errors=(
            InvalidRequest,
            InvalidJSON,
            Unauthorized,
            ResourceNotFound,
            RequestTimeout,
            BodyTooLarge,
            UnsupportedMediaType,
        ),
    ),
    Endpoint(
        "/v1/batches",
        "GET",
        list_batches,
        operation_id="listBatches",
        summary="The key's batches, newest first",
        answer="A page of batches; `has_more` says whether another follows `last_id`.",
        response=BatchList,
        query=BatchListQuery,
        errors=(InvalidRequest, Unauthorized, ResourceNotFound),
    ),
    Endpoint(
        "/v1/batches/{batch_id}",
        "GET",
        get_batch,
        operation_id="retrieveBatch",
        summary="A batch",
        answer="The batch, with its status, counts and files.",
        response=Batch,
        errors=(Unauthorized, ResourceNotFound),
    ),
    Endpoint(
        "/v1/batches/{batch_id}/cancel",
        "POST",
        cancel_batch,
        operation_id="cancelBatch",
        summary="Cancel a batch",
        answer="The batch, cancelling: the lines done so far are kept, the rest are cancelled.",
        response=Batch,
        errors=(Unauthorized, ResourceNotFound, BatchNotCancellable),
    ),
)
