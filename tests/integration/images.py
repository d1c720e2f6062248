"""Encoded test images for the integration tests."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw


def scene(colour: tuple[int, int, int], shape: str = "circle", size=(96, 96)) -> Image.Image:
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_item(data: bytes) -> dict:
    return {"type": "image", "image": b64(data)}
