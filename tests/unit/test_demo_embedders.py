"""The evaluation's HTTP source speaks the /v1/embeddings contract (answered here by a fake)."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from export.demo.embedders import OverHttp


def _fake(requests: list[dict]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        assert request.headers["authorization"] == "Bearer k"
        body = json.loads(request.content)
        requests.append(body)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(item))), 0.0, 1.0]}
            for i, item in enumerate(body["input"])
        ]
        return httpx.Response(200, json={"object": "list", "data": data})

    return httpx.MockTransport(answer)


def test_texts_go_as_strings_in_requests_of_at_most_64():
    requests: list[dict] = []
    http = OverHttp("http://api/", api_key="k", transport=_fake(requests))
    vectors = http.texts([f"caption {i}" for i in range(130)])
    assert [len(r["input"]) for r in requests] == [64, 64, 2]
    assert all(r["model"] == "epithre-embed" for r in requests)
    assert requests[0]["input"][0] == "caption 0"
    assert vectors.shape == (130, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, rtol=1e-6)


def test_images_go_as_base64_objects_in_requests_of_at_most_8():
    requests: list[dict] = []
    http = OverHttp("http://api", api_key="k", transport=_fake(requests))
    pngs = [b"\x89PNG" + bytes([i]) for i in range(17)]
    assert http.images(pngs).shape == (17, 3)
    assert [len(r["input"]) for r in requests] == [8, 8, 1]
    first = requests[0]["input"][0]
    assert first["type"] == "image"
    assert base64.b64decode(first["image"], validate=True) == pngs[0]


def test_an_error_answer_is_raised_with_its_status():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "no images here"}})

    http = OverHttp("http://api", api_key="k", transport=httpx.MockTransport(refuse))
    with pytest.raises(RuntimeError, match="400"):
        http.texts(["a red square"])
