from __future__ import annotations

import json
from pathlib import Path

import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import openapi
from gateway.schema import ENCODING_FORMATS, TRUNCATE_MODES
from gateway.settings import Settings

DOCS = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_checked_in_document_is_the_served_one() -> None:
    # On failure: python -m gateway.openapi > docs/openapi.json
    assert json.loads(DOCS.read_text()) == openapi.DOCUMENT


def test_document_route_serves_the_document() -> None:
    app = Starlette(routes=[Route("/openapi.json", openapi.document, methods=["GET"])])
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi.DOCUMENT


def test_document_loads_in_schemathesis_with_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(openapi.DOCUMENT)
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert operations == {
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
    }


def test_request_schema_agrees_with_the_validation_code() -> None:
    request = openapi.DOCUMENT["components"]["schemas"]["EmbeddingRequest"]["properties"]
    defaults = Settings()
    assert request["model"]["enum"] == ["epithre-embed"]
    assert request["truncate"]["enum"] == list(TRUNCATE_MODES)
    assert request["encoding_format"]["enum"] == list(ENCODING_FORMATS)
    assert request["instruction"]["maxLength"] == defaults.max_instruction_chars
    assert (request["dimensions"]["minimum"], request["dimensions"]["maximum"]) == (1, 384)
    assert "384" in request["dimensions"]["description"]
    texts, mixed = request["input"]["anyOf"][1:]
    assert (texts["minItems"], texts["maxItems"]) == (1, defaults.max_text_items)
    assert mixed["maxItems"] == defaults.max_text_items + defaults.max_image_items


def test_every_error_status_has_the_openai_error_shape() -> None:
    responses = openapi.DOCUMENT["paths"]["/v1/embeddings"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "413", "415", "422", "429", "503", "504"}
    for status, response in responses.items():
        if status != "200":
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}
    error = openapi.DOCUMENT["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["message", "type", "param", "code"]
