"""Any sentence-transformers folder serves the same way: a tiny BERT that leaves its instruction
out of pooling and is exported with pooling in the postprocess, checked against its reference."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from export.repository import export_repository
from runner.stack import running_stack
from tests import tiny_models
from tests.integration.conftest import cosine

pytestmark = pytest.mark.integration

TEXTS = ["kucing oren tidur di kasur", "Harga beras naik 12% menjelang Lebaran"]
INSTRUCTION = "Represent this query for retrieving relevant documents:"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    root = tmp_path_factory.mktemp("tiny-bert")
    checkpoint = tiny_models.build("bert", root / "checkpoint", include_prompt=False)
    export_repository(checkpoint, root / "repo", pool_in_graph=False)
    reference = SentenceTransformer(str(checkpoint), device="cpu")
    with running_stack(root / "triton", repository=root / "repo") as stack:
        yield stack.base_url, reference


def _served(base_url: str, **body) -> np.ndarray:
    response = httpx.post(
        f"{base_url}/v1/embeddings",
        json={"model": "epithre-embed", "input": TEXTS, **body},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]])


def test_postprocess_pooling_matches_the_reference(tiny):
    base_url, reference = tiny
    served = _served(base_url)
    assert served.shape == (2, 32)
    for got, expected in zip(served, reference.encode(TEXTS), strict=True):
        assert cosine(got, expected) >= 0.9999


def test_instruction_left_out_of_pooling_matches_encode_with_prompt(tiny):
    base_url, reference = tiny
    served = _served(base_url, instruction=INSTRUCTION)
    expected = reference.encode(TEXTS, prompt=f"{INSTRUCTION} ")
    for got, want in zip(served, expected, strict=True):
        assert cosine(got, want) >= 0.9999


def test_openapi_states_the_tiny_model_s_native_dimension(tiny):
    base_url, reference = tiny
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    dimensions = document["components"]["schemas"]["EmbeddingRequest"]["properties"]["dimensions"]
    assert dimensions["anyOf"][0]["maximum"] == reference.get_embedding_dimension() == 32
