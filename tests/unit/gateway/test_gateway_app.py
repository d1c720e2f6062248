from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import numpy as np
import pytest
from gateway_fakes import (
    FACTS,
    FakeEmbedder,
    error_body,
    fake_tokens,
    fake_vector,
    serve,
    token_limit,
    triton_failure,
)
from starlette.testclient import TestClient

from gateway import Settings, create_app
from gateway.app import wait_for_facts
from gateway.errors import BackendUnavailable, TokenLimitExceeded
from model_repository import wire

TEXTS = ["kucing oren tidur di kasur", "anjing golden retriever"]


def test_embeddings_response_has_the_contract_shape():
    with serve() as (client, _):
        response = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": TEXTS})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    tokens = sum(fake_tokens(t) for t in TEXTS)
    assert body == {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "embedding": body["data"][i]["embedding"],
                "index": i,
                "type": "text",
                "truncated": False,
            }
            for i in range(2)
        ],
        "model": "epithre-embed",
        "usage": {
            "prompt_tokens": tokens,
            "total_tokens": tokens,
            "image_count": 0,
            "truncated_count": 0,
        },
    }
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(
            np.array(body["data"][i]["embedding"], dtype=np.float32), fake_vector(text)
        )


def test_single_string_input_is_one_item():
    with serve() as (client, embedder):
        body = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"}).json()
    assert [d["index"] for d in body["data"]] == [0]
    assert embedder.calls[0]["texts"] == ["a"]


def test_all_texts_go_to_the_embedder_in_one_call_with_the_request_options():
    with serve() as (client, embedder):
        client.post(
            "/v1/embeddings",
            json={
                "model": "epithre-embed",
                "input": TEXTS,
                "instruction": "query:",
                "truncate": "START",
                "dimensions": 64,
            },
        )
    assert embedder.calls == [
        {
            "texts": TEXTS,
            "instruction": "query:",
            "truncate": "START",
            "dimensions": 64,
            "priority": wire.PRIORITY_REALTIME,
        }
    ]


def test_dimensions_shorten_every_vector():
    with serve() as (client, _):
        body = client.post(
            "/v1/embeddings", json={"model": "epithre-embed", "input": TEXTS, "dimensions": 16}
        ).json()
    assert [len(d["embedding"]) for d in body["data"]] == [16, 16]


def test_dimensions_above_native_is_400_with_the_native_size_in_the_body():
    with serve() as (client, embedder):
        response = client.post(
            "/v1/embeddings", json={"model": "epithre-embed", "input": "a", "dimensions": 1024}
        )
    assert response.status_code == 400
    assert response.json() == error_body(
        "dimensions must be an integer from 1 to 384, the native dimension of epithre-embed; "
        "got 1024",
        type="invalid_request_error",
        param="dimensions",
        code="invalid_value",
    )
    assert embedder.calls == []


def test_base64_encoding_decodes_to_the_float_response():
    request = {"model": "epithre-embed", "input": TEXTS}
    with serve() as (client, _):
        floats = client.post("/v1/embeddings", json=request).json()
        packed = client.post("/v1/embeddings", json={**request, "encoding_format": "base64"}).json()
    for f, b in zip(floats["data"], packed["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(f["embedding"], dtype=np.float32))
    assert floats["usage"] == packed["usage"]


@pytest.mark.parametrize(
    ("mode", "kept"), [("END", "h" + "x" * 9_999), ("START", "x" * 9_999 + "t")]
)
def test_long_text_is_cut_to_the_right_end_and_counted(mode, kept):
    text = "h" + "x" * 9_999 + "t"
    with serve() as (client, embedder):
        body = client.post(
            "/v1/embeddings",
            json={"model": "epithre-embed", "input": [text, "short"], "truncate": mode},
        ).json()
    assert embedder.calls[0]["texts"] == [kept, "short"]
    assert body["usage"]["truncated_count"] == 1


def test_token_truncation_reported_by_the_model_is_counted_once():
    text = "x" * 10_001
    embedder = FakeEmbedder(token_truncated={0, 1})
    with serve(embedder) as (client, _):
        body = client.post(
            "/v1/embeddings", json={"model": "epithre-embed", "input": [text, "b", "c"]}
        ).json()
    assert body["usage"]["truncated_count"] == 2


def test_truncate_none_with_a_long_text_is_422_before_the_model_is_called():
    with serve() as (client, embedder):
        response = client.post(
            "/v1/embeddings",
            json={"model": "epithre-embed", "input": ["a", "x" * 10_001], "truncate": "NONE"},
        )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "input[1]"
    assert embedder.calls == []


def test_token_limit_from_the_model_is_422_naming_the_input():
    embedder = FakeEmbedder(
        error=triton_failure("StatusCode.INVALID_ARGUMENT", token_limit(1, 300, 256))
    )
    assert isinstance(embedder.error, TokenLimitExceeded)
    with serve(embedder) as (client, _):
        response = client.post(
            "/v1/embeddings",
            json={"model": "epithre-embed", "input": ["a", "b"], "truncate": "NONE"},
        )
    assert response.status_code == 422
    assert response.json() == error_body(
        "input[1] has 300 tokens, above the model's limit of 256; shorten it or use truncate "
        "END or START",
        type="invalid_request_error",
        param="input[1]",
        code="input_too_long",
    )


def test_full_triton_queue_is_429_with_retry_after():
    embedder = FakeEmbedder(
        error=triton_failure("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")
    )
    with serve(embedder) as (client, _):
        response = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert response.json() == error_body(
        "the model is busy; retry shortly", type="rate_limit_error", param=None, code="backend_busy"
    )


@pytest.mark.parametrize(
    ("status", "message", "http"),
    [
        ("StatusCode.UNAVAILABLE", "Socket closed", 503),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", 504),
        ("StatusCode.INTERNAL", "secret /opt/path traceback", 502),
    ],
)
def test_backend_failures_map_to_their_status_without_internals(status, message, http):
    with serve(FakeEmbedder(error=triton_failure(status, message))) as (client, _):
        response = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
    assert response.status_code == http
    assert message not in response.text


def test_unexpected_exception_is_a_generic_500_with_request_id():
    with serve(FakeEmbedder(error=KeyError("internal detail"))) as (client, _):
        response = client.post(
            "/v1/embeddings",
            json={"model": "epithre-embed", "input": "a"},
            headers={"X-Request-ID": "req-500"},
        )
    assert response.status_code == 500
    assert response.json() == error_body(
        "internal server error", type="api_error", param=None, code="internal_error"
    )
    assert response.headers["x-request-id"] == "req-500"


def test_request_id_is_echoed_or_generated_on_every_response():
    with serve() as (client, _):
        echoed = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
        generated = client.post("/v1/embeddings", json={"model": "nope", "input": "a"})
        unsafe = client.get("/health/live", headers={"X-Request-ID": "a b\tc"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert generated.headers.get_list("x-request-id") == [generated.headers["x-request-id"]]
    assert unsafe.headers["x-request-id"] != "a b\tc"


def test_unknown_route_is_404_in_the_error_shape():
    with serve() as (client, _):
        response = client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json() == error_body(
        "Not Found", type="invalid_request_error", param=None, code=None
    )


def test_models_lists_the_served_model_with_its_fingerprint():
    with serve() as (client, _):
        body = client.get("/v1/models").json()
    assert body == {
        "object": "list",
        "data": [
            {
                "id": "epithre-embed",
                "object": "model",
                "created": 0,
                "owned_by": "epithre",
                "fingerprint": "f" * 64,
            }
        ],
    }


def test_two_builds_with_one_name_differ_by_fingerprint():
    other = FakeEmbedder(facts_value=replace(FACTS, fingerprint="0" * 64))
    with serve() as (client, _), serve(other) as (other_client, _):
        models = [c.get("/v1/models").json()["data"][0] for c in (client, other_client)]
    assert [(m["id"], m["fingerprint"]) for m in models] == [
        ("epithre-embed", "f" * 64),
        ("epithre-embed", "0" * 64),
    ]


def test_embeddings_carry_the_fingerprint_of_the_build_that_answered_in_a_header():
    # Not the fingerprint read at start-up ("f" * 64): another build answered this one.
    with serve(FakeEmbedder(builds=["c" * 64])) as (client, _):
        response = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
    assert response.headers["x-model-fingerprint"] == "c" * 64


def test_live_is_200_without_asking_the_model():
    with serve(FakeEmbedder(probe_error=RuntimeError("down"))) as (client, _):
        assert client.get("/health/live").json() == {"status": "live", "builds": []}


def test_ready_is_200_when_the_probe_embeds():
    with serve() as (client, _):
        response = client.get("/health/ready")
    # No embedding answered yet, so no build has been seen.
    assert (response.status_code, response.json()) == (200, {"status": "ready", "builds": []})


def test_ready_is_503_json_when_the_probe_fails():
    with serve(FakeEmbedder(probe_error=BackendUnavailable("x"))) as (client, _):
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == error_body(
        "the model backend is not ready",
        type="service_unavailable_error",
        param=None,
        code="backend_unavailable",
    )


def test_startup_retries_facts_until_the_backend_answers():
    embedder = FakeEmbedder(facts_errors=[BackendUnavailable("starting")] * 2)
    with serve(embedder) as (client, _):
        assert client.get("/v1/models").status_code == 200
    assert embedder.facts_errors == []


def test_startup_gives_up_after_its_deadline():
    embedder = FakeEmbedder(facts_errors=[BackendUnavailable("starting")] * 100)
    with pytest.raises(RuntimeError, match=r"no model facts after 0\.1 s: starting"):
        asyncio.run(wait_for_facts(embedder, timeout_s=0.1))


def test_injected_embedder_is_left_open_for_its_owner():
    embedder = FakeEmbedder()
    with serve(embedder):
        pass
    assert embedder.closed is False


def test_served_model_name_comes_from_the_facts():
    embedder = FakeEmbedder(facts_value=replace(FACTS, served_model_name="other"))
    with TestClient(create_app(Settings(), embedder)) as client:
        ok = client.post("/v1/embeddings", json={"model": "other", "input": "a"})
        wrong = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
    assert (ok.status_code, ok.json()["model"]) == (200, "other")
    assert (wrong.status_code, wrong.json()["error"]["param"]) == (400, "model")
