"""The OpenAPI document of this deployment, built at start-up and served at GET /openapi.json.

Everything in it comes from a declaration: the objects from gateway/protocol.py (the request as
`validation.request_type` builds it from this deployment's limits and model facts), the routes
from `routes.ENDPOINTS`, and each status from the errors an endpoint declares. docs/openapi.json
is the document of the default settings and the default export:
`python -m gateway.openapi > docs/openapi.json` (a test keeps it current).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from tritonclient.grpc import model_config_pb2

from gateway.endpoint import JSON, Endpoint
from gateway.errors import APIError
from gateway.protocol import EmbeddingRequest, Error, Limits
from gateway.routes import ENDPOINTS
from gateway.settings import Settings
from gateway.triton import parse_facts
from gateway.validation import request_type
from model_repository import wire

COMPONENTS = "#/components/schemas/{model}"
BYTES = {"type": "string", "format": "binary"}
PATH_PARAMETER = re.compile(r"{(\w+)}")
HEADERS = {
    "Retry-After": "Seconds to wait before retrying.",
    "WWW-Authenticate": "The authentication scheme: Bearer.",
}


def _ref(model: type) -> dict[str, str]:
    return {"$ref": COMPONENTS.format(model=model.__name__)}


def _errors(errors: tuple[type[APIError], ...]) -> dict[str, Any]:
    by_status: dict[int, list[type[APIError]]] = defaultdict(list)
    for error in errors:
        by_status[error.status].append(error)
    responses = {}
    for status, kinds in sorted(by_status.items()):
        descriptions = dict.fromkeys(kind.description for kind in kinds)
        headers = dict.fromkeys(h for kind in kinds for h in kind.documented_headers)
        response: dict[str, Any] = {
            "description": " ".join(descriptions),
            "content": {JSON: {"schema": _ref(Error)}},
        }
        if headers:
            response["headers"] = {
                h: {"description": HEADERS[h], "schema": {"type": "string"}} for h in headers
            }
        responses[str(status)] = response
    return responses


def _body(endpoint: Endpoint, request: type[EmbeddingRequest]) -> type[BaseModel] | None:
    return request if endpoint.request is EmbeddingRequest else endpoint.request


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    """The path's `{name}`s, then the query's fields as the client spells them."""
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAMETER.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        properties = endpoint.query.model_json_schema(by_alias=True)["properties"]
        for name, field in endpoint.query.model_fields.items():
            spelled = field.alias or name
            parameters.append(
                {
                    "name": spelled,
                    "in": "query",
                    "required": field.is_required(),
                    "description": field.description or "",
                    "schema": properties[spelled],
                }
            )
    return parameters


def build_document(limits: Limits) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a deployment with `limits`."""
    published = [e for e in ENDPOINTS if e.operation_id]
    bodies = {e: _body(e, request_type(limits)) for e in published}
    models = [(body, "validation") for body in dict.fromkeys(bodies.values()) if body]
    models += [(Error, "serialization")]
    models += [(e.response, "serialization") for e in published if e.response]
    _, schemas = models_json_schema(models, ref_template=COMPONENTS)
    paths: dict[str, Any] = {}
    for endpoint in published:
        operation: dict[str, Any] = {
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
        }
        if not endpoint.authenticated:
            operation["security"] = []
        parameters = _parameters(endpoint)
        if parameters:
            operation["parameters"] = parameters
        body = bodies[endpoint]
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {endpoint.request_media_type: {"schema": _ref(body)}},
            }
        success = {"description": endpoint.answer}
        if endpoint.response is not None:
            success["content"] = {JSON: {"schema": _ref(endpoint.response)}}
        elif endpoint.response_media_type != JSON:
            success["content"] = {endpoint.response_media_type: {"schema": BYTES}}
        operation["responses"] = {"200": success, **_errors(endpoint.errors)}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Epithre embeddings API",
            "version": "1.0.0",
            "description": (
                "OpenAI-compatible embeddings of text and images in one space; vectors are "
                f"L2-normalized. Served model: {limits.model}, {limits.native_dimension} "
                "dimensions."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas["$defs"],
        },
        # Without configured API keys the gateway accepts unauthenticated requests: {} allows that.
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }


def _config(repository: Path, model: str) -> dict[str, Any]:
    config = text_format.Parse(
        (repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def exported_limits(repository: Path, settings: Settings) -> Limits:
    """The limits a gateway with `settings` states in front of the export in `repository`."""
    has_images = (repository / wire.IMAGE_PREPROCESS / "config.pbtxt").exists()
    facts = parse_facts(
        _config(repository, wire.ENSEMBLE_TEXT),
        _config(repository, wire.TEXT_ENCODER),
        _config(repository, wire.IMAGE_PREPROCESS) if has_images else None,
    )
    return Limits.of(settings, facts)


def render(limits: Limits) -> str:
    """The document as docs/openapi.json holds it."""
    return json.dumps(build_document(limits), indent=2) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print the OpenAPI document of an export.")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    arguments = parser.parse_args()
    print(render(exported_limits(arguments.model_repository, Settings())), end="")
