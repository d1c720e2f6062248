from __future__ import annotations

from gateway_fakes import FakeEmbedder, error_body, serve
from starlette.testclient import TestClient

from gateway import Settings, create_app

REQUEST = {"model": "epithre-embed", "input": "a"}


def test_no_keys_means_no_authentication():
    with serve() as (client, _):
        assert client.post("/v1/embeddings", json=REQUEST).status_code == 200


def test_missing_key_is_401_in_the_error_shape():
    with serve(api_keys=("k1",)) as (client, _):
        response = client.post("/v1/embeddings", json=REQUEST)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == error_body(
        "missing API key: send Authorization: Bearer <key>",
        type="invalid_request_error",
        param=None,
        code="invalid_api_key",
    )


def test_wrong_key_is_401():
    with serve(api_keys=("k1",)) as (client, _):
        for header in ("Bearer k2", "Bearer k1x", "Basic k1", "k1"):
            response = client.post(
                "/v1/embeddings", json=REQUEST, headers={"Authorization": header}
            )
            assert response.status_code == 401, header


def test_any_configured_key_is_accepted():
    with serve(api_keys=("k1", "k2")) as (client, _):
        for key in ("k1", "k2"):
            response = client.post(
                "/v1/embeddings", json=REQUEST, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200


def test_401_comes_before_any_body_byte_is_read():
    read: list[bytes] = []

    def body():
        read.append(b"x")
        yield b'{"model": "epithre-embed", "input": "a"}'

    with serve(api_keys=("k1",)) as (client, embedder):
        response = client.post(
            "/v1/embeddings", content=body(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 401
    assert read == [] and embedder.calls == []


def test_models_needs_a_key_and_health_and_metrics_do_not():
    with serve(api_keys=("k1",)) as (client, _):
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_a_key_from_the_keys_file_is_accepted_and_others_refused(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# ops team\nfile-key\n")
    settings = Settings.from_env({"EPITHRE_API_KEYS_FILE": str(path)})
    with TestClient(create_app(settings, FakeEmbedder())) as client:
        statuses = [
            client.post(
                "/v1/embeddings", json=REQUEST, headers={"Authorization": f"Bearer {key}"}
            ).status_code
            for key in ("file-key", "# ops team", "other")
        ]
    assert statuses == [200, 401, 401]
