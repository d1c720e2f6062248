from __future__ import annotations

import json
import logging

import pytest
from gateway_fakes import MULTIMODAL, FakeEmbedder, b64, encoded_image, fake_tokens, serve

SECRET = "my card number is 4111 1111 1111 1111"
PNG = encoded_image()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]


def test_one_json_line_per_request_with_counts_and_no_input(caplog):
    caplog.set_level(logging.DEBUG)
    image = {"type": "image", "image": b64(PNG)}
    with serve(FakeEmbedder(facts_value=MULTIMODAL)) as (client, _):
        response = client.post(
            "/v1/embeddings",
            json={"model": "epithre-embed", "input": [SECRET, image]},
            headers={"X-Request-ID": "req-1"},
        )
    assert response.status_code == 200
    [line] = access_lines(caplog)
    assert line == {
        "method": "POST",
        "path": "/v1/embeddings",
        "status": 200,
        "duration_ms": line["duration_ms"],
        "request_id": "req-1",
        "items": 2,
        "images": 1,
        "tokens": fake_tokens(SECRET),
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    for fragment in (SECRET, "4111", b64(PNG)[:16], repr(PNG[:16]), PNG.hex()[:16]):
        assert fragment not in caplog.text


def test_refused_request_is_logged_with_its_status_and_without_counts(caplog):
    caplog.set_level(logging.INFO)
    with serve(api_keys=("k1",)) as (client, _):
        client.post("/v1/embeddings", json={"model": "epithre-embed", "input": SECRET})
    [line] = access_lines(caplog)
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/embeddings", 401)
    assert set(line) == {"method", "path", "status", "duration_ms", "request_id"}
    assert len(line["request_id"]) == 32
    assert SECRET not in caplog.text


def test_unexpected_error_is_logged_as_500(caplog):
    caplog.set_level(logging.INFO)
    with serve(FakeEmbedder(error=RuntimeError(SECRET))) as (client, _):
        client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
    [line] = access_lines(caplog)
    assert line["status"] == 500
