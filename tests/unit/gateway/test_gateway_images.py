"""Image items: the three shapes, strict base64, sniffed formats, limits checked from headers."""

from __future__ import annotations

import base64
import io
import os

import pytest
from gateway_fakes import MULTIMODAL, FakeEmbedder, fake_vector, serve
from PIL import Image

from gateway.errors import ImageRejected, TokenLimitExceeded
from tests.unit.model_repository.test_imaging import png_header_claiming


def encoded(fmt: str = "PNG", mode: str = "RGB", size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(client, items, **body):
    return client.post("/v1/embeddings", json={"model": "epithre-embed", "input": items, **body})


@pytest.fixture
def multimodal():
    with serve(FakeEmbedder(facts_value=MULTIMODAL)) as running:
        yield running


PNG = encoded()
# One byte short of a multiple of three, so its base64 ends in "=".
PADDED = PNG + b"\0" * (4 - len(PNG) % 3)
SHAPES = [
    {"type": "image", "image": b64(PNG)},
    {"type": "image", "image_url": f"data:image/png;base64,{b64(PNG)}"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
    # The sniffed bytes decide the format, not the declared MIME type.
    {"type": "image", "image_url": f"data:image/jpeg;base64,{b64(PNG)}"},
]


def test_all_image_shapes_embed_in_input_order_with_their_types(multimodal):
    client, embedder = multimodal
    response = post(client, ["teks", *SHAPES, "lagi"])
    assert response.status_code == 200
    body = response.json()
    assert [(d["index"], d["type"]) for d in body["data"]] == [
        (0, "text"),
        (1, "image"),
        (2, "image"),
        (3, "image"),
        (4, "image"),
        (5, "text"),
    ]
    assert body["usage"]["image_count"] == 4
    assert body["data"][1]["embedding"] == pytest.approx(fake_vector(PNG.hex()).tolist())
    assert body["data"][5]["embedding"] == pytest.approx(fake_vector("lagi").tolist())
    assert [c["image"] for c in embedder.calls if "image" in c] == [PNG] * 4


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "RGBA"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("GIF", "P"), ("PNG", "L"), ("PNG", "P")],
)
def test_the_four_formats_in_any_mode_are_accepted(multimodal, fmt, mode):
    client, _ = multimodal
    response = post(client, [{"type": "image", "image": b64(encoded(fmt, mode))}])
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("item", "status", "fragment"),
    [
        ({"type": "image", "image": b64(b"GARBAGE!" * 4)}, 400, "unsupported or unrecognized"),
        ({"type": "image", "image": b64(encoded("BMP"))}, 400, "unsupported or unrecognized"),
        ({"type": "image", "image": b64(PNG)[:-1]}, 400, "not valid base64"),
        ({"type": "image", "image": b64(PADDED).rstrip("=")}, 400, "not valid base64"),
        ({"type": "image", "image": b64(PNG)[:8] + "\n" + b64(PNG)[8:]}, 400, "not valid base64"),
        ({"type": "image", "image": "-" + b64(PNG)[1:]}, 400, "not valid base64"),
        ({"type": "image", "image": 7}, 400, "must be a base64 string"),
        (
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}},
            400,
            "remote image URLs are not fetched",
        ),
        (
            {"type": "image", "image_url": "https://example.com/a.png"},
            400,
            "remote image URLs are not fetched",
        ),
        ({"type": "image"}, 400, "needs `image`"),
        (
            {"type": "image", "image": b64(png_header_claiming(30_000, 30_000))},
            400,
            "over the limit of 40000000 pixels",
        ),
        (
            {"type": "image", "image": b64(png_header_claiming(7_000, 7_000))},
            400,
            "7000x7000 is over the limit of 40000000 pixels",
        ),
    ],
)
def test_bad_image_is_refused_naming_the_item(multimodal, item, status, fragment):
    client, embedder = multimodal
    response = post(client, ["ok", item])
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == "input[1]"
    assert fragment in error["message"]
    assert embedder.calls == []
    assert post(client, ["ok"]).status_code == 200


def test_an_image_over_its_byte_limit_is_413_naming_it():
    noise = Image.frombytes("RGB", (32, 32), os.urandom(32 * 32 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    with serve(FakeEmbedder(facts_value=MULTIMODAL), max_image_bytes=1000) as (client, _):
        response = post(client, ["ok", {"type": "image", "image": b64(buffer.getvalue())}])
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "input[1]"


def test_more_than_8_images_is_400(multimodal):
    client, _ = multimodal
    response = post(client, [{"type": "image", "image": b64(PNG)}] * 9)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "input has 9 image items; at most 8 are allowed"


def test_instruction_with_an_image_is_422(multimodal):
    client, _ = multimodal
    response = post(client, ["a", {"type": "image", "image": b64(PNG)}], instruction="find:")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "instruction"


def test_an_image_triton_rejects_is_400_naming_its_position():
    embedder = FakeEmbedder(facts_value=MULTIMODAL, image_error=ImageRejected("broken stream"))
    with serve(embedder) as (client, _):
        response = post(client, ["a", "b", {"type": "image", "image": b64(PNG)}])
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "input[2]: broken stream",
        "type": "invalid_request_error",
        "param": "input[2]",
        "code": "invalid_image",
    }


def test_token_limit_error_names_the_api_position_not_the_text_position():
    error = TokenLimitExceeded(item=1, tokens=300, limit=256)
    embedder = FakeEmbedder(facts_value=MULTIMODAL, error=error)
    with serve(embedder) as (client, _):
        response = post(client, [{"type": "image", "image": b64(PNG)}, "a", "b"], truncate="NONE")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "input[2]"


def test_dimensions_apply_to_images_too(multimodal):
    client, _ = multimodal
    response = post(client, ["a", {"type": "image", "image": b64(PNG)}], dimensions=16)
    assert [len(d["embedding"]) for d in response.json()["data"]] == [16, 16]
