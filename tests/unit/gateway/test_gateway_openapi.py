from __future__ import annotations

import dataclasses
from pathlib import Path

import schemathesis
from gateway_fakes import MULTIMODAL, FakeEmbedder, serve

from gateway.openapi import build_document, exported_limits, render
from gateway.protocol import ENCODING_FORMATS, TRUNCATE_MODES, Limits
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "openapi.json"
DEFAULTS = Settings()
DOCUMENT = build_document(Limits.of(DEFAULTS, MULTIMODAL))


def request_properties(document: dict) -> dict:
    return document["components"]["schemas"]["EmbeddingRequest"]["properties"]


def test_the_checked_in_document_is_the_default_export_s() -> None:
    # On failure: python -m gateway.openapi > docs/openapi.json
    limits = exported_limits(ROOT / "model_repository", DEFAULTS)
    assert DOCS.read_text() == render(limits)


def test_document_route_serves_this_deployment_s_document() -> None:
    with serve(FakeEmbedder(facts_value=MULTIMODAL)) as (client, _):
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT


def test_document_states_the_operator_s_limits() -> None:
    with serve(FakeEmbedder(facts_value=MULTIMODAL), max_text_items=32) as (client, _):
        document = client.get("/openapi.json").json()
    texts = request_properties(document)["input"]["anyOf"][1]
    assert texts["maxItems"] == 32


def test_document_states_the_served_model_s_dimension() -> None:
    facts = dataclasses.replace(MULTIMODAL, native_dimension=48, served_model_name="tiny")
    properties = request_properties(build_document(Limits.of(DEFAULTS, facts)))
    assert properties["dimensions"]["anyOf"][0]["maximum"] == 48
    assert properties["model"]["const"] == "tiny"


def test_a_text_only_model_documents_no_image_input() -> None:
    facts = dataclasses.replace(MULTIMODAL, supports_images=False)
    document = build_document(Limits.of(DEFAULTS, facts))
    assert len(request_properties(document)["input"]["anyOf"]) == 2
    assert "ImageBase64" not in document["components"]["schemas"]


def test_document_loads_in_schemathesis_with_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert operations == {
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/{batch_id}"),
        ("POST", "/v1/batches/{batch_id}/cancel"),
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("GET", "/v1/files/{file_id}"),
        ("GET", "/v1/files/{file_id}/content"),
        ("DELETE", "/v1/files/{file_id}"),
    }


def test_request_schema_agrees_with_the_validation_code() -> None:
    request = request_properties(DOCUMENT)
    assert request["model"]["const"] == "epithre-embed"
    assert request["truncate"]["anyOf"][0]["enum"] == list(TRUNCATE_MODES)
    assert request["encoding_format"]["anyOf"][0]["enum"] == list(ENCODING_FORMATS)
    assert request["instruction"]["anyOf"][0]["maxLength"] == DEFAULTS.max_instruction_chars
    dimensions = request["dimensions"]["anyOf"][0]
    assert (dimensions["minimum"], dimensions["maximum"]) == (1, 384)
    assert "384" in request["dimensions"]["description"]
    texts, mixed = request["input"]["anyOf"][1:]
    assert (texts["minItems"], texts["maxItems"]) == (1, DEFAULTS.max_text_items)
    assert mixed["maxItems"] == DEFAULTS.max_text_items + DEFAULTS.max_image_items


def test_every_error_status_has_the_openai_error_shape() -> None:
    responses = DOCUMENT["paths"]["/v1/embeddings"]["post"]["responses"]
    assert set(responses) == {
        "200",
        "400",
        "401",
        "408",
        "413",
        "415",
        "422",
        "429",
        "500",
        "502",
        "503",
        "504",
    }
    for status, response in responses.items():
        if status != "200":
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}
    error = DOCUMENT["components"]["schemas"]["ErrorDetail"]
    assert error["required"] == ["message", "type", "param", "code"]


def test_429_and_503_document_retry_after_and_401_the_auth_scheme() -> None:
    responses = DOCUMENT["paths"]["/v1/embeddings"]["post"]["responses"]
    assert set(responses["429"]["headers"]) == {"Retry-After"}
    assert set(responses["503"]["headers"]) == {"Retry-After"}
    assert set(responses["401"]["headers"]) == {"WWW-Authenticate"}
