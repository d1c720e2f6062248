"""A tiny CLIP checkpoint served end to end: text and image vectors equal the PyTorch model's."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from export.repository import export_repository
from runner.stack import running_stack
from tests import tiny_models
from tests.integration.conftest import cosine
from tests.integration.images import encode, image_item, scene

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    root = tmp_path_factory.mktemp("tiny-clip")
    checkpoint = tiny_models.build_dual("clip", root / "checkpoint")
    export_repository(checkpoint, root / "repo")
    model = AutoModel.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    processor = CLIPImageProcessorPil.from_pretrained(checkpoint)
    with running_stack(root / "triton", repository=root / "repo") as stack:
        yield stack.base_url, model, tokenizer, processor


def _embed(base_url: str, items: list, **body) -> dict:
    response = httpx.post(
        f"{base_url}/v1/embeddings",
        json={"model": "epithre-embed", "input": items, **body},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_mixed_input_matches_both_reference_towers_in_order(clip):
    import torch

    base_url, model, tokenizer, processor = clip
    red, blue = scene((220, 30, 30)), scene((30, 60, 220), "square", (120, 80))
    texts = ["kucing oren tidur di kasur", "anjing golden retriever"]
    payload = _embed(
        base_url,
        [texts[0], image_item(encode(red)), texts[1], image_item(encode(blue, "JPEG", quality=95))],
    )
    assert [(d["index"], d["type"]) for d in payload["data"]] == [
        (0, "text"),
        (1, "image"),
        (2, "text"),
        (3, "image"),
    ]
    assert payload["usage"]["image_count"] == 2
    with torch.no_grad():
        features = tokenizer(texts, padding=True, return_tensors="pt")
        text_ref = model.get_text_features(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"]
        ).pooler_output.numpy()
        pixels = processor([red], return_tensors="pt")["pixel_values"]
        image_ref = model.get_image_features(pixel_values=pixels).pooler_output.numpy()
    vectors = [d["embedding"] for d in payload["data"]]
    assert cosine(vectors[0], text_ref[0]) >= 0.9999
    assert cosine(vectors[2], text_ref[1]) >= 0.9999
    assert cosine(vectors[1], image_ref[0]) >= 0.9999


@pytest.mark.parametrize("dimensions", [1, 7, 16])
def test_image_and_text_vectors_have_the_same_length_for_every_dimensions(clip, dimensions):
    base_url = clip[0]
    payload = _embed(
        base_url, ["teks", image_item(encode(scene((0, 200, 0))))], dimensions=dimensions
    )
    assert [len(d["embedding"]) for d in payload["data"]] == [dimensions, dimensions]


def test_image_matryoshka_is_the_renormalized_prefix_of_the_full_vector(clip):
    base_url = clip[0]
    item = image_item(encode(scene((200, 200, 0))))
    full = np.array(_embed(base_url, [item])["data"][0]["embedding"])
    short = np.array(_embed(base_url, [item], dimensions=8)["data"][0]["embedding"])
    np.testing.assert_allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-6)
