"""The official OpenAI Python SDK, default settings, pointed at the gateway."""

from __future__ import annotations

import numpy as np
import pytest
from openai import OpenAI

from tests.integration.conftest import cosine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="unused-locally", max_retries=0)


def test_sdk_default_call_gets_reference_vectors(client, reference):
    texts = ["penebangan liar di hutan lindung", "perlindungan satwa dilindungi UU 5/1990"]
    response = client.embeddings.create(model="epithre-embed", input=texts)
    got = np.array([d.embedding for d in response.data])
    assert got.shape == (2, 384)
    for vector, expected in zip(got, reference.encode(texts), strict=True):
        assert cosine(vector, expected) >= 0.999
    assert response.usage.prompt_tokens > 0


def test_sdk_dimensions_truncates(client):
    response = client.embeddings.create(model="epithre-embed", input=["kucing"], dimensions=128)
    vector = np.array(response.data[0].embedding)
    assert vector.shape == (128,)
    assert abs(np.linalg.norm(vector) - 1) < 1e-5


def test_sdk_extra_body_instruction_reaches_the_model(client, reference):
    text = "UU 41/1999 tentang Kehutanan pasal 50"
    instruction = "Represent this query for retrieving relevant documents:"
    response = client.embeddings.create(
        model="epithre-embed", input=[text], extra_body={"instruction": instruction}
    )
    expected = reference.encode(text, prompt=f"{instruction} ")
    assert cosine(response.data[0].embedding, expected) >= 0.9999


def test_sdk_models_list_names_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["epithre-embed"]
