"""image_preprocess: decoding guards, and pixels equal to the reference image processors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from imaging import InvalidImage, open_image, pixel_values
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from export.dual_tower import PROCESSOR_KEYS
from export.probes import probe_images

LIMIT = 40_000_000


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims `width` x `height` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def settings_of(processor) -> dict:
    return {k: v for k, v in processor.to_dict().items() if k in PROCESSOR_KEYS}


@pytest.mark.parametrize(
    "processor",
    [
        CLIPImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 40, "width": 40}),
        SiglipImageProcessorPil(size={"height": 36, "width": 36}),
    ],
    ids=["clip", "siglip"],
)
def test_pixels_equal_the_reference_processor(processor):
    settings = settings_of(processor)
    for label, image in probe_images().items():
        expected = processor([image], return_tensors="np")["pixel_values"][0]
        decoded = open_image(encoded(image, "PNG"), max_pixels=LIMIT)
        np.testing.assert_allclose(
            pixel_values(decoded, settings), expected, atol=1e-5, err_msg=label
        )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_the_four_formats_decode(fmt):
    image = Image.new("RGB", (20, 10), (200, 10, 10))
    assert open_image(encoded(image, fmt), max_pixels=LIMIT).size == (20, 10)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "CMYK"])
def test_every_mode_becomes_three_channels(mode):
    image = Image.new("RGB", (8, 8), (10, 200, 10)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    settings = {"size": {"height": 4, "width": 4}, "image_mean": [0, 0, 0], "image_std": [1, 1, 1]}
    pixels = pixel_values(open_image(encoded(image, fmt), max_pixels=LIMIT), settings)
    assert pixels.shape == (3, 4, 4)


def test_transparent_areas_become_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    settings = {"do_resize": False, "do_normalize": False}
    pixels = pixel_values(open_image(encoded(image, "PNG"), max_pixels=LIMIT), settings)
    np.testing.assert_allclose(pixels, 1.0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the upright image is 10 wide, 30 tall
    decoded = open_image(encoded(image, "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)
    assert decoded.size == (10, 30)


def test_a_bomb_is_refused_from_its_header():
    with pytest.raises(InvalidImage, match="over the limit of 40000000 pixels"):
        open_image(png_header_claiming(30_000, 30_000), max_pixels=LIMIT)


def test_our_pixel_limit_applies_below_pillows_own():
    with pytest.raises(InvalidImage, match=r"\(100x100\) is over the limit of 5000 pixels"):
        open_image(png_header_claiming(100, 100), max_pixels=5000)


def test_garbage_is_refused():
    with pytest.raises(InvalidImage, match="cannot decode"):
        open_image(b"definitely not an image", max_pixels=LIMIT)


def test_a_truncated_file_is_refused():
    data = encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    with pytest.raises(InvalidImage):
        open_image(data[: len(data) // 2], max_pixels=LIMIT)


def test_gif_first_frame_is_used():
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = open_image(buffer.getvalue(), max_pixels=LIMIT).convert("RGB")
    assert decoded.getpixel((0, 0))[0] > 200
