"""gateway/images.py: the three shapes, strict base64, sniffed formats, limits from the header."""

from __future__ import annotations

import io
import os

import pytest
from gateway_fakes import b64, encoded_image, png_header_claiming
from PIL import Image, ImageFile

from gateway import images
from gateway.errors import APIError, ItemTooLarge
from gateway.images import configure_pillow, decode_image, is_image_item, sniff

MIB = 1024 * 1024
PNG = encoded_image()
BAD_BASE64 = "input[2] is not valid base64 (standard alphabet, padded, no whitespace)"


def decode(item: dict, *, max_bytes: int = 20 * MIB, max_pixels: int = 40_000_000) -> bytes:
    return decode_image(item, index=2, max_bytes=max_bytes, max_pixels=max_pixels)


def refused(item: dict, **limits: int) -> APIError:
    with pytest.raises(APIError) as info:
        decode(item, **limits)
    assert info.value.param == "input[2]"
    return info.value


def raw(data: bytes) -> dict:
    return {"type": "image", "image": b64(data)}


@pytest.fixture(autouse=True)
def _pillow_limit():
    configure_pillow(max_pixels=40_000_000)


@pytest.mark.parametrize(
    "item",
    [
        {"type": "image", "image": b64(PNG)},
        {"type": "image", "image_url": f"data:image/png;base64,{b64(PNG)}"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
        {"type": "image_url", "image_url": {"url": f"DATA:image/png;BASE64,{b64(PNG)}"}},
    ],
    ids=["raw", "data-uri", "chat-image-url", "upper-case-uri"],
)
def test_every_shape_decodes_to_the_file_bytes_unchanged(item):
    assert decode(item) == PNG


def test_format_comes_from_the_magic_bytes_not_the_mime_type():
    assert decode({"type": "image", "image_url": f"data:image/jpeg;base64,{b64(PNG)}"}) == PNG


@pytest.mark.parametrize(
    ("fmt", "mode", "sniffed"),
    [
        ("PNG", "RGB", "PNG"),
        ("PNG", "RGBA", "PNG"),
        ("PNG", "L", "PNG"),
        ("PNG", "P", "PNG"),
        ("JPEG", "RGB", "JPEG"),
        ("JPEG", "L", "JPEG"),
        ("WEBP", "RGB", "WEBP"),
        ("WEBP", "RGBA", "WEBP"),
        ("GIF", "P", "GIF"),
        ("GIF", "L", "GIF"),
    ],
)
def test_png_jpeg_webp_gif_in_any_mode_are_accepted(fmt, mode, sniffed):
    data = encoded_image(fmt, mode)
    assert sniff(data) == sniffed
    assert decode(raw(data)) == data


@pytest.mark.parametrize(
    "data",
    [b"GARBAGE!" * 4, encoded_image("BMP"), encoded_image("TIFF"), b"RIFF\0\0\0\0WAVEfmt "],
    ids=["garbage", "bmp", "tiff", "riff-wave"],
)
def test_other_formats_are_400_unsupported(data):
    error = refused(raw(data))
    assert (error.status, error.code) == (400, "invalid_value")
    assert error.message == (
        "input[2]: unsupported or unrecognized image format; send PNG, JPEG, WebP or GIF"
    )


@pytest.mark.parametrize(
    "data", [PNG[:12], encoded_image("JPEG")[:20], b"GIF89a\x01"], ids=["png", "jpeg", "gif"]
)
def test_a_known_magic_with_a_broken_header_is_400(data):
    error = refused(raw(data))
    assert error.status == 400
    assert error.message.startswith("input[2]: the ") and "header is not readable" in error.message


PADDED = PNG + b"\0" * (4 - len(PNG) % 3)  # a length that leaves "=" padding in the base64


@pytest.mark.parametrize(
    "payload",
    [
        "",
        b64(PADDED).rstrip("="),
        b64(PNG)[:-1],
        b64(PNG)[:8] + "\n" + b64(PNG)[8:-1],
        b64(PNG)[:8] + " " + b64(PNG)[8:-1],
        "-" + b64(PNG)[1:],
        "_" + b64(PNG)[1:],
        "AB==" + b64(PNG),
        "=" + b64(PNG)[1:],
        "é" + b64(PNG)[1:],
    ],
    ids=[
        "empty",
        "unpadded",
        "length",
        "newline",
        "space",
        "urlsafe-minus",
        "urlsafe-underscore",
        "padding-inside",
        "leading-padding",
        "non-ascii",
    ],
)
def test_base64_must_be_strict(payload):
    error = refused({"type": "image", "image": payload})
    assert (error.status, error.message) == (400, BAD_BASE64)


def test_a_data_uri_payload_is_held_to_the_same_base64_rules():
    error = refused({"type": "image", "image_url": "data:image/png;base64," + b64(PNG)[:-1]})
    assert error.message == BAD_BASE64


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.png",
        "https://example.com/cat.png",
        "ftp://example.com/cat.png",
        "cat.png",
        b64(PNG),
    ],
)
def test_a_non_data_url_is_400_and_never_fetched(url):
    error = refused({"type": "image_url", "image_url": {"url": url}})
    assert (error.status, error.message) == (
        400,
        "input[2]: remote image URLs are not fetched; send base64 or a data URI",
    )


@pytest.mark.parametrize(
    "url", ["data:image/png," + b64(PNG), "data:image/png;base64" + b64(PNG), "data:"]
)
def test_a_data_uri_without_base64_is_400(url):
    error = refused({"type": "image", "image_url": url})
    assert error.message == ("input[2] is not a base64 data URI: send data:<mime>;base64,<payload>")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"type": "image", "image": 7}, "input[2].image must be a base64 string"),
        ({"type": "image"}, "input[2] needs `image` (base64) or `image_url` (a data URI)"),
        ({"type": "image_url", "image_url": {"uri": "x"}}, "input[2] needs `image` (base64) or "),
        ({"type": "image_url", "image_url": 5}, "input[2] needs `image` (base64) or "),
    ],
)
def test_an_item_without_a_payload_is_400_naming_the_missing_field(item, message):
    assert refused(item).message.startswith(message)


def noise_png(side: int) -> bytes:
    """A PNG that does not compress, so its size is known to be well above `side`."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decoded_size_up_to_the_cap_passes_and_one_byte_over_is_413():
    data = noise_png(24)
    assert decode(raw(data), max_bytes=len(data)) == data
    error = refused(raw(data), max_bytes=len(data) - 1)
    assert isinstance(error, ItemTooLarge)
    assert (error.status, error.code) == (413, "item_too_large")
    assert error.message == f"input[2] is over the limit of {len(data) - 1} bytes"


def test_the_byte_cap_is_checked_from_the_base64_length_before_decoding(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("decoded an over-limit image")

    monkeypatch.setattr(images.pybase64, "b64decode", never)
    error = refused({"type": "image", "image": "A" * (4 * MIB)}, max_bytes=3 * MIB - 1)
    assert error.status == 413


def test_a_30000_by_30000_png_is_refused_from_its_header_without_decoding(monkeypatch):
    def never(self):
        raise AssertionError("decoded pixels")

    monkeypatch.setattr(Image.Image, "load", never)
    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    error = refused(raw(png_header_claiming(30_000, 30_000)))
    assert (error.status, error.message) == (400, "input[2] is over the limit of 40000000 pixels")


def test_pixels_are_capped_by_max_pixels_from_the_header():
    assert decode(raw(png_header_claiming(10, 10)), max_pixels=100)
    error = refused(raw(png_header_claiming(10, 11)), max_pixels=100)
    assert (error.status, error.message) == (
        400,
        "input[2]: 10x11 is over the limit of 100 pixels",
    )


def test_a_header_claiming_no_pixels_is_400():
    error = refused(raw(png_header_claiming(0, 5)))
    assert (error.status, error.message) == (400, "input[2]: the PNG header is not readable")


def test_configure_pillow_sets_pillows_own_limit():
    configure_pillow(max_pixels=1234)
    assert Image.MAX_IMAGE_PIXELS == 1234


def test_no_message_echoes_the_payload():
    payload = b64(b"GARBAGE!" * 64)
    items = [
        {"type": "image", "image": payload},
        {"type": "image", "image": payload[:-1]},
        {"type": "image", "image_url": "https://x/" + payload},
        {"type": "image", "image_url": "data:image/png," + payload},
    ]
    for item in items:
        assert payload[:16] not in refused(item).message


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"type": "image", "image": "x"}, True),
        ({"type": "image_url", "image_url": {}}, True),
        ({"type": "text", "text": "x"}, False),
        ({"image": "x"}, False),
        ("image", False),
    ],
)
def test_is_image_item_looks_at_the_type_field(item, expected):
    assert is_image_item(item) is expected
