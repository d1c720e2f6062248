"""The contract's text promises, end to end through the gateway and a real tritonserver."""

from __future__ import annotations

import numpy as np
import pytest
from httpx import Client

from tests.integration.conftest import cosine

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"


def embed(base_url: str, **body) -> dict:
    response = Client(base_url=base_url, timeout=60).post(
        "/v1/embeddings", json={"model": MODEL, **body}
    )
    assert response.status_code == 200, response.text
    return response.json()


def vectors(payload: dict) -> np.ndarray:
    return np.array([item["embedding"] for item in payload["data"]], dtype=np.float32)


def test_first_contract_example_matches_sentence_transformers(base_url, reference):
    text = "kucing oren tidur di kasur"
    payload = embed(base_url, input=text)
    assert payload["object"] == "list"
    assert payload["model"] == MODEL
    (item,) = payload["data"]
    assert (item["object"], item["index"], item["type"]) == ("embedding", 0, "text")
    vector = np.array(item["embedding"])
    assert vector.shape == (384,)
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert cosine(vector, reference.encode(text)) >= 0.999
    usage = payload["usage"]
    assert usage["prompt_tokens"] == len(reference.tokenizer(text)["input_ids"])
    assert usage["total_tokens"] == usage["prompt_tokens"]
    assert (usage["image_count"], usage["truncated_count"]) == (0, 0)


def test_dimensions_above_native_size_is_a_clear_400(base_url):
    response = Client(base_url=base_url).post(
        "/v1/embeddings", json={"model": MODEL, "input": ["a", "b"], "dimensions": 1024}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "dimensions"
    assert "384" in error["message"]


def test_matryoshka_vector_is_the_renormalized_prefix_of_the_full_vector(base_url):
    texts = ["penebangan liar di hutan lindung", "perlindungan satwa dilindungi UU 5/1990"]
    full = vectors(embed(base_url, input=texts))
    short = vectors(embed(base_url, input=texts, dimensions=64))
    assert short.shape == (2, 64)
    prefix = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, prefix, atol=1e-6)


def test_same_text_gives_the_same_vector_alone_or_in_a_batch_of_64(base_url):
    text = "Harga beras naik menjelang Lebaran"
    others = [
        f"kalimat pengisi nomor {i} dengan panjang yang berbeda " * (i % 7 + 1) for i in range(63)
    ]
    alone = vectors(embed(base_url, input=[text]))[0]
    batch = vectors(embed(base_url, input=[*others[:40], text, *others[40:]]))
    assert batch.shape == (64, 384)
    assert cosine(alone, batch[40]) >= 0.99999


def test_instruction_matches_sentence_transformers_prompt(base_url, reference):
    text = "UU 41/1999 tentang Kehutanan pasal 50"
    instruction = "Given a legal query, retrieve relevant Indonesian regulations"
    payload = embed(base_url, input=[text], instruction=instruction)
    expected = reference.encode(text, prompt=f"{instruction} ")
    assert cosine(payload["data"][0]["embedding"], expected) >= 0.9999
    plain = vectors(embed(base_url, input=[text]))[0]
    assert cosine(plain, expected) < 0.999
    prompt_ids = reference.tokenizer(f"{instruction} {text}")["input_ids"]
    assert payload["usage"]["prompt_tokens"] == len(prompt_ids)


def _long_text(head_word: str, tail_word: str) -> str:
    # ~400 tokens: over the 256-token limit, far under the 10,000-character cap.
    return " ".join([head_word] * 200 + [tail_word] * 200)


def test_truncate_end_and_start_keep_different_ends_of_a_long_text(base_url):
    end = embed(base_url, input=[_long_text("kucing", "anjing"), _long_text("kucing", "ikan")])
    start = embed(
        base_url,
        input=[_long_text("kucing", "anjing"), _long_text("burung", "anjing")],
        truncate="START",
    )
    end_vectors, start_vectors = vectors(end), vectors(start)
    assert cosine(end_vectors[0], end_vectors[1]) >= 0.99999  # only the head was kept
    assert cosine(start_vectors[0], start_vectors[1]) >= 0.99999  # only the tail was kept
    assert cosine(end_vectors[0], start_vectors[0]) < 0.9
    assert end["usage"]["truncated_count"] == 2
    assert [item["truncated"] for item in end["data"]] == [True, True]
    assert end["usage"]["prompt_tokens"] == 2 * 256


def test_truncate_none_over_the_token_limit_is_422_naming_the_item(base_url):
    response = Client(base_url=base_url, timeout=60).post(
        "/v1/embeddings",
        json={"model": MODEL, "input": ["pendek", _long_text("a", "b")], "truncate": "NONE"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "input[1]"
    follow_up = embed(base_url, input=["pendek"], truncate="NONE")
    assert len(follow_up["data"]) == 1
