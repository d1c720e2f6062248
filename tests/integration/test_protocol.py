"""The declared protocol and wire contract against a real tritonserver: each per-item error kind a
model produces reaches the client with its status, message and `param`; the OpenAPI document
states the deployment's own limits."""

from __future__ import annotations

import httpx
import pytest

from runner.stack import gateway_process
from tests.integration.images import b64, encode, image_item, scene
from tests.unit.model_repository.test_imaging import png_header_claiming

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"


def post(base_url: str, items: list, **body) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/embeddings", json={"model": MODEL, "input": items, **body}, timeout=60
    )


def test_a_text_over_the_token_limit_with_none_is_422_from_text_preprocess(base_url):
    # 1,500 one-token words fit the character cap and pass the gateway; only the tokenizer knows.
    long = " ".join(["a"] * 1_500)
    response = post(
        base_url, ["pendek", image_item(encode(scene((9, 9, 9)))), long], truncate="NONE"
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "input[2]",
        "input_too_long",
        "invalid_request_error",
    )
    assert error["message"] == (
        "input[2] has 1502 tokens, above the model's limit of 256; shorten it or use truncate "
        "END or START"
    )


def test_an_image_only_the_preprocess_can_refuse_is_400_naming_it(base_url):
    # A readable PNG header with no pixel data behind it passes the gateway's header check.
    headless = {"type": "image", "image": b64(png_header_claiming(8, 6))}
    response = post(base_url, ["ok", image_item(encode(scene((0, 0, 0)))), headless])
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("input[2]", "invalid_image")
    assert error["message"].startswith("input[2]: ")
    assert len(error["message"]) > len("input[2]: ")
    assert post(base_url, ["the next request is served"]).status_code == 200


def test_openapi_states_the_operator_s_text_item_limit(stack):
    with gateway_process(stack.triton.grpc_url, EPITHRE_MAX_TEXT_ITEMS="32") as (_, base_url):
        document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
        over = post(base_url, ["a"] * 33)
    request = document["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert request["input"]["anyOf"][1]["maxItems"] == 32
    assert over.status_code == 400
    assert over.json()["error"]["message"] == "input has 33 text items; at most 32 are allowed"


def test_openapi_states_the_served_model_and_its_native_dimension(base_url):
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    request = document["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert request["model"]["const"] == MODEL
    assert request["dimensions"]["anyOf"][0]["maximum"] == 384
