"""The contract's image promises on the default (demo) model, through `make serve`-style servers."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from openai import OpenAI
from PIL import Image

from tests.integration.conftest import cosine
from tests.integration.images import b64, encode, image_item, scene
from tests.unit.model_repository.test_imaging import png_header_claiming

pytestmark = pytest.mark.integration

MODEL = "epithre-embed"


def post(base_url: str, items, **body) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/embeddings", json={"model": MODEL, "input": items, **body}, timeout=60
    )


def vector(base_url: str, item) -> np.ndarray:
    response = post(base_url, [item])
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"])


def test_contract_mixed_example_with_the_openai_sdk(base_url):
    client = OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0)
    cat = b64(encode(scene((255, 140, 0)), "JPEG"))
    dog = b64(encode(scene((200, 160, 60), "square"), "JPEG"))
    resp = client.embeddings.create(
        model=MODEL,
        input=[
            "kucing oren tidur di kasur",
            {"type": "image", "image_url": f"data:image/jpeg;base64,{cat}"},
            "anjing golden retriever",
            {"type": "image", "image_url": f"data:image/jpeg;base64,{dog}"},
        ],
    )
    assert [(item.index, item.type) for item in resp.data] == [
        (0, "text"),
        (1, "image"),
        (2, "text"),
        (3, "image"),
    ]
    assert all(abs(np.linalg.norm(item.embedding) - 1) < 1e-5 for item in resp.data)
    assert {len(item.embedding) for item in resp.data} == {384}


def test_contract_mixed_example_with_raw_httpx_and_all_three_image_shapes(base_url):
    png = encode(scene((30, 60, 220)))
    items = [
        "text query",
        {"type": "image", "image": b64(png)},
        {"type": "image", "image_url": f"data:image/png;base64,{b64(png)}"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png)}"}},
        "another text",
    ]
    response = post(base_url, items)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["type"] for d in data] == ["text", "image", "image", "image", "text"]
    assert cosine(data[1]["embedding"], data[3]["embedding"]) >= 0.99999
    assert response.json()["usage"]["image_count"] == 3


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("PNG", "RGB"),
        ("JPEG", "RGB"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("PNG", "RGBA"),
        ("PNG", "L"),
        ("PNG", "P"),
    ],
)
def test_every_format_and_mode_embeds(base_url, fmt, mode):
    image = scene((220, 30, 30)).convert(mode)
    assert vector(base_url, image_item(encode(image, fmt))).shape == (384,)


def test_exif_rotated_jpeg_embeds_like_its_upright_copy(base_url):
    upright = scene((220, 30, 30), "square", (60, 120))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rotated = vector(base_url, image_item(encode(stored, "JPEG", quality=95, exif=exif.tobytes())))
    straight = vector(base_url, image_item(encode(upright, "JPEG", quality=95)))
    assert cosine(rotated, straight) >= 0.999


def test_a_red_square_query_ranks_a_red_square_above_a_blue_circle(base_url):
    response = post(
        base_url,
        [
            "kotak merah",
            image_item(encode(scene((220, 30, 30), "square"))),
            image_item(encode(scene((30, 60, 220), "circle"))),
        ],
    )
    query, red_square, blue_circle = (np.array(d["embedding"]) for d in response.json()["data"])
    assert query @ red_square > query @ blue_circle


BAD_IMAGES = {
    "garbage bytes": ({"type": "image", "image": b64(b"this is not an image at all")}, 400),
    "bad base64": ({"type": "image", "image": "iVBORw0KGgo*&^%"}, 400),
    "30000x30000 png": ({"type": "image", "image": b64(png_header_claiming(30_000, 30_000))}, 400),
    "remote url": ({"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}, 400),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_get_their_error_naming_the_item_and_the_next_request_is_served(base_url, case):
    item, status = BAD_IMAGES[case]
    response = post(base_url, ["ok", item])
    assert response.status_code == status
    assert response.json()["error"]["param"] == "input[1]"
    assert vector(base_url, image_item(encode(scene((0, 0, 0))))).shape == (384,)


def test_a_ninth_image_is_400(base_url):
    item = image_item(encode(scene((0, 200, 0))))
    response = post(base_url, [item] * 9)
    assert response.status_code == 400
    assert "8" in response.json()["error"]["message"]


def test_a_26_mb_body_is_413_and_the_next_request_is_served(base_url):
    payload = base64.b64encode(b"\0" * (26 * 1024 * 1024 * 3 // 4)).decode()
    response = post(base_url, [{"type": "image", "image": payload}])
    assert response.status_code == 413
    assert vector(base_url, "masih hidup").shape == (384,)


def test_instruction_with_an_image_is_422(base_url):
    response = post(base_url, [image_item(encode(scene((1, 2, 3))))], instruction="Represent:")
    assert response.status_code == 422


def test_held_out_text_to_image_recall_at_1_is_at_least_0_8(base_url):
    from export.demo.embedders import OverHttp
    from export.demo.evaluate import EVAL_SEED, evaluate

    report = evaluate(OverHttp(base_url), scenes=120, seed=EVAL_SEED)
    for retrieval in report["retrieval"]:
        assert retrieval["captions"] >= 50
        assert retrieval["text_to_image_r1"] >= 0.8, retrieval
    assert all(p["ok"] for p in report["probes"])
