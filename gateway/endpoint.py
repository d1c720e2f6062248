"""`Endpoint`: one route as the app routes it and the OpenAPI document describes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import APIError

JSON = "application/json"


def json_response(value: BaseModel) -> Response:
    """A declared object as the JSON body of a 200."""
    return Response(value.model_dump_json().encode(), media_type=JSON)


@dataclass(frozen=True)
class Endpoint:
    """One route; those with an `operation_id` are in the public OpenAPI document."""

    path: str
    method: str
    handler: Callable[[Request], Awaitable[Response]]
    operation_id: str | None = None
    summary: str = ""
    answer: str = ""  # what a 200 means
    response: type[BaseModel] | None = None
    # The JSON body's declaration (EmbeddingRequest stands for this deployment's, built from its
    # limits) and the query string's; `{name}`s in the path are its path parameters.
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # Media types other than JSON: a form upload's body, a file's bytes answered as a 200.
    request_media_type: str = "application/json"
    response_media_type: str = "application/json"
    # Every error it can answer, besides 404/405 for unknown routes and methods.
    errors: tuple[type[APIError], ...] = ()
    authenticated: bool = True
