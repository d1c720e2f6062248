"""The contract's fields, limits and errors, as a client sees them: the official OpenAI SDK where a
client would use it (typed exceptions included), raw HTTP for what the SDK cannot send."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from runner.stack import gateway_process
from tests.integration.conftest import cosine

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"


@pytest.fixture(scope="module")
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0)


def vector_of(client: OpenAI, text: str, **options) -> np.ndarray:
    return np.array(
        client.embeddings.create(model=MODEL, input=[text], **options).data[0].embedding
    )


def test_invalid_model_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="text-embedding-3-small", input=["a"])
    assert info.value.body["param"] == "model"


@pytest.mark.parametrize("value", ["", [], [""]])
def test_empty_input_is_a_bad_request(client, value):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=value)
    assert info.value.body["param"] in ("input", "input[0]")


def test_64_texts_pass_and_65_are_a_bad_request(client):
    assert len(client.embeddings.create(model=MODEL, input=["x"] * 64).data) == 64
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=["x"] * 65)
    assert "64" in info.value.body["message"]


def test_dimensions_1_and_native_work_and_0_is_a_bad_request(client):
    assert len(vector_of(client, "kucing", dimensions=1)) == 1
    assert len(vector_of(client, "kucing", dimensions=384)) == 384
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=["kucing"], dimensions=0)


def test_float_and_base64_give_the_same_vector(client):
    as_float = client.embeddings.create(model=MODEL, input=["sama"], encoding_format="float")
    as_base64 = client.embeddings.create(model=MODEL, input=["sama"])
    np.testing.assert_allclose(as_float.data[0].embedding, as_base64.data[0].embedding, atol=1e-6)


def test_default_truncate_keeps_the_first_10000_characters_and_counts_it(base_url):
    text = "a" * 500 + " kucing" * 2000  # 14,500 characters
    response = httpx.post(
        f"{base_url}/v1/embeddings", json={"model": MODEL, "input": [text]}, timeout=60
    ).json()
    assert response["usage"]["truncated_count"] == 1
    assert response["data"][0]["truncated"] is True
    head = httpx.post(
        f"{base_url}/v1/embeddings", json={"model": MODEL, "input": [text[:10_000]]}, timeout=60
    ).json()
    assert cosine(response["data"][0]["embedding"], head["data"][0]["embedding"]) >= 0.99999


def test_truncate_start_keeps_the_last_10000_characters(client):
    text = "anjing " * 1000 + "kucing " * 1500  # 17,500 characters
    start = vector_of(client, text, extra_body={"truncate": "START"})
    tail = vector_of(client, text[-10_000:], extra_body={"truncate": "START"})
    assert cosine(start, tail) >= 0.99999


def test_truncate_none_over_10000_characters_is_unprocessable(client):
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.embeddings.create(
            model=MODEL, input=["ok", "x" * 10_001], extra_body={"truncate": "NONE"}
        )
    assert info.value.body["param"] == "input[1]"


def test_unknown_truncate_value_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=["a"], extra_body={"truncate": "MIDDLE"})
    assert info.value.body["param"] == "truncate"


def test_token_id_arrays_are_refused_with_advice(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
    assert "check_embedding_ctx_length=False" in info.value.body["message"]


def test_usage_counts_every_token_the_encoder_sees(client, reference):
    texts = ["kucing oren", "penebangan liar di hutan lindung"]
    usage = client.embeddings.create(model=MODEL, input=texts).usage
    expected = sum(len(reference.tokenizer(t)["input_ids"]) for t in texts)
    assert (usage.prompt_tokens, usage.total_tokens) == (expected, expected)


def test_wrong_route_and_method_are_404_and_405(base_url):
    assert httpx.get(f"{base_url}/v1/embeddings").status_code == 405
    assert httpx.post(f"{base_url}/v1/embedding", json={}).status_code == 404


def test_non_json_content_type_is_415(base_url):
    response = httpx.post(
        f"{base_url}/v1/embeddings",
        content=b"model=epithre-embed",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


def test_a_missing_or_wrong_api_key_is_an_authentication_error(stack):
    with gateway_process(stack.triton.grpc_url, EPITHRE_API_KEYS="sekret-1,sekret-2") as (_, url):
        good = OpenAI(base_url=f"{url}/v1", api_key="sekret-2", max_retries=0)
        assert len(good.embeddings.create(model=MODEL, input=["a"]).data) == 1
        bad = OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.embeddings.create(model=MODEL, input=["a"])


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        / 1024
    )


def test_a_300_mb_chunked_body_is_answered_413_after_about_25_mb_with_flat_memory(stack):
    host, port = stack.base_url.removeprefix("http://").split(":")
    chunk = b'"aaaaaaaa",' * 100_000  # ~1.1 MB of an array that never closes
    before = _rss_mib(stack.gateway.pid)
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        connection.setblocking(False)
        while sent < 300 * 1024 * 1024 and not answer:
            frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            view = memoryview(frame)
            while view and not answer:
                with contextlib.suppress(BlockingIOError):
                    view = view[connection.send(view) :]
                with contextlib.suppress(BlockingIOError):
                    answer = connection.recv(4096)
            sent += len(chunk)
    # The answer came while the client was still sending: the server stopped at its cap.
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 60 * 1024 * 1024
    assert _rss_mib(stack.gateway.pid) - before < 60
    follow_up = httpx.post(
        f"{stack.base_url}/v1/embeddings", json={"model": MODEL, "input": "masih hidup"}, timeout=60
    )
    assert follow_up.status_code == 200


def test_a_rate_limited_key_gets_429_with_retry_after_while_another_key_is_served(stack):
    settings = {"EPITHRE_API_KEYS": "key-a,key-b", "EPITHRE_RATE_LIMIT_RPM": "2"}
    with gateway_process(stack.triton.grpc_url, **settings) as (_, url):
        first = OpenAI(base_url=f"{url}/v1", api_key="key-a", max_retries=0)
        other = OpenAI(base_url=f"{url}/v1", api_key="key-b", max_retries=0)
        for _ in range(2):
            first.embeddings.create(model=MODEL, input=["a"])
        with pytest.raises(openai.RateLimitError) as info:
            first.embeddings.create(model=MODEL, input=["a"])
        assert int(info.value.response.headers["Retry-After"]) >= 1
        assert len(other.embeddings.create(model=MODEL, input=["b"]).data) == 1


def test_openapi_document_is_served(base_url):
    document = httpx.get(f"{base_url}/openapi.json").json()
    assert "/v1/embeddings" in document["paths"]
