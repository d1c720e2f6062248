from __future__ import annotations

from gateway_fakes import MULTIMODAL, FakeEmbedder, b64, encoded_image, fake_tokens, serve
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import BackendBusy


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_items_tokens_and_truncations():
    texts = ["a b c", "x" * 10_001]
    with serve() as (client, _):
        client.post("/v1/embeddings", json={"model": "epithre-embed", "input": texts})
        client.post("/v1/embeddings", json={"model": "nope", "input": "a"})
        client.get("/no/such/path")
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    values = samples(response.text)
    path = ("path", "/v1/embeddings")
    assert values[("epithre_http_requests_total", (path, ("status", "200")))] == 1
    assert values[("epithre_http_requests_total", (path, ("status", "400")))] == 1
    assert values[("epithre_http_requests_total", (("path", "other"), ("status", "404")))] == 1
    assert values[("epithre_http_request_duration_seconds_count", (path,))] == 2
    assert values[("epithre_embedded_items_total", ())] == 2
    tokens = fake_tokens("a b c") + fake_tokens("x" * 10_000)
    assert values[("epithre_prompt_tokens_total", ())] == tokens
    assert values[("epithre_truncated_items_total", ())] == 1
    # The scrape itself is in flight while the text is rendered.
    assert values[("epithre_http_requests_in_flight", ())] == 1


def test_metrics_count_images_among_the_items():
    image = {"type": "image", "image": b64(encoded_image())}
    with serve(FakeEmbedder(facts_value=MULTIMODAL)) as (client, _):
        client.post("/v1/embeddings", json={"model": "epithre-embed", "input": ["a", image, image]})
        values = samples(client.get("/metrics").text)
    assert values[("epithre_embedded_items_total", ())] == 3
    assert values[("epithre_embedded_images_total", ())] == 2
    assert values[("epithre_prompt_tokens_total", ())] == fake_tokens("a")


def test_backend_errors_are_counted_by_status():
    with serve(FakeEmbedder(error=BackendBusy("busy"))) as (client, _):
        client.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
        values = samples(client.get("/metrics").text)
    key = ("epithre_http_requests_total", (("path", "/v1/embeddings"), ("status", "429")))
    assert values[key] == 1


def test_each_app_has_its_own_registry():
    with serve() as (first, _), serve() as (second, _):
        first.post("/v1/embeddings", json={"model": "epithre-embed", "input": "a"})
        values = samples(second.get("/metrics").text)
    assert values[("epithre_embedded_items_total", ())] == 0


def test_requests_to_a_resource_are_counted_under_its_route_template():
    with serve() as (client, _):
        for file_id in ("file-a", "file-b"):
            client.get(f"/v1/files/{file_id}")
        client.get("/v1/files/file-a/content")
        values = samples(client.get("/metrics").text)
    one = ("path", "/v1/files/{file_id}")
    content = ("path", "/v1/files/{file_id}/content")
    assert values[("epithre_http_requests_total", (one, ("status", "404")))] == 2
    assert values[("epithre_http_requests_total", (content, ("status", "404")))] == 1
