"""Image items of the request: the three accepted shapes, strict base64, format and size checks.

Everything here runs before any pixel is decoded: the body has been read under its cap, the
decoded size is bounded from the base64 length, and the pixel count comes from the header.
"""

from __future__ import annotations

import binascii
import io
import re
import warnings
from base64 import b64decode

from PIL import Image, UnidentifiedImageError

from gateway.errors import InvalidRequest, ItemTooLarge

IMAGE_TYPES = ("image", "image_url")
# Magic bytes decide the format, never the data URI's MIME type.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_DATA_URI = re.compile(r"data:[^,;]*(?:;[^,;=]+=[^,;]*)*;base64,(.*)", re.DOTALL)
UNSUPPORTED = "unsupported or unrecognized image format; send PNG, JPEG, WebP or GIF"


def is_image_item(item: object) -> bool:
    return isinstance(item, dict) and item.get("type") in IMAGE_TYPES


def _payload(item: dict, param: str) -> str:
    """The base64 text of one image item, whichever of the three shapes it uses."""
    if item.get("type") == "image" and "image" in item:
        value = item["image"]
        if not isinstance(value, str):
            raise InvalidRequest(f"{param}.image must be a base64 string", param=param)
        return value
    url = item.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str):
        raise InvalidRequest(
            f"{param} needs `image` (base64) or `image_url` (a data URI)", param=param
        )
    match = _DATA_URI.fullmatch(url)
    if match is None:
        raise InvalidRequest(
            f"{param}: remote image URLs are not fetched; send base64 or a data:...;base64, URI",
            param=param,
        )
    return match.group(1)


def decode_image(item: dict, *, index: int, max_bytes: int, max_pixels: int) -> bytes:
    """The encoded image file of item `index`, checked from its header; raise an APIError."""
    param = f"input[{index}]"
    payload = _payload(item, param)
    if len(payload) // 4 * 3 > max_bytes:
        raise ItemTooLarge(f"{param} is over the limit of {max_bytes} bytes", param=param)
    if not payload or len(payload) % 4 or _BASE64.fullmatch(payload) is None:
        raise InvalidRequest(
            f"{param} is not valid base64 (standard alphabet, padded, no whitespace)", param=param
        )
    try:
        data = b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidRequest(f"{param} is not valid base64", param=param) from None
    if len(data) > max_bytes:
        raise ItemTooLarge(f"{param} is over the limit of {max_bytes} bytes", param=param)
    _check_header(data, param=param, max_pixels=max_pixels)
    return data


def sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in SIGNATURES if data.startswith(magic)), None)


def _check_header(data: bytes, *, param: str, max_pixels: int) -> None:
    fmt = sniff(data)
    if fmt is None:
        raise InvalidRequest(f"{param}: {UNSUPPORTED}", param=param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # open() parses the header only; no pixel is decoded here.
            width, height = Image.open(io.BytesIO(data), formats=[fmt]).size
    except Image.DecompressionBombError:
        # Pillow's own limit is far above ours, so this header is over ours too.
        raise InvalidRequest(
            f"{param} is over the limit of {max_pixels} pixels", param=param
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidRequest(f"{param}: the {fmt} header is not readable", param=param) from None
    if width * height > max_pixels:
        raise InvalidRequest(
            f"{param}: {width}x{height} is over the limit of {max_pixels} pixels", param=param
        )
