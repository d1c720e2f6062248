"""Decode one encoded image and turn it into pixel values, as the checkpoint's processor says.

Resize, crop, rescale and normalize follow a CLIP-style `preprocessor_config.json` (the keys of
transformers' image processors), so that served pixels equal the reference processor's.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


class InvalidImage(ValueError):
    """The bytes are not an image we embed; the message is safe to show to the client."""


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode `data` after checking its header's pixel count (a bomb is never decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidImage(
                    f"the image ({width}x{height}) is over the limit of {max_pixels} pixels"
                )
            image.seek(0)  # the first frame of a GIF
            image.load()
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, also from the header: the same answer as ours.
        raise InvalidImage(f"the image is over the limit of {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InvalidImage(f"cannot decode the image: {type(error).__name__}") from None
    return ImageOps.exif_transpose(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparent areas on white, as transformers' `convert_to_rgb` does."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _resized_size(width: int, height: int, size: dict) -> tuple[int, int]:
    if "shortest_edge" in size:
        short, long = sorted((width, height))
        new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    return size["width"], size["height"]


def _center_crop(image: Image.Image, crop: dict) -> Image.Image:
    width, height = image.size
    top, left = (height - crop["height"]) // 2, (width - crop["width"]) // 2
    return image.crop((left, top, left + crop["width"], top + crop["height"]))


def pixel_values(image: Image.Image, settings: dict) -> np.ndarray:
    """[3, H, W] float32 for one decoded image."""
    if settings.get("do_convert_rgb", True):
        image = to_rgb(image)
    if settings.get("do_resize", True):
        target = _resized_size(*image.size, settings["size"])
        image = image.resize(target, resample=Image.Resampling(settings.get("resample", 3)))
    if settings.get("do_center_crop", False):
        image = _center_crop(image, settings["crop_size"])
    pixels = np.asarray(image, dtype=np.float32)
    if settings.get("do_rescale", True):
        pixels = pixels * np.float32(settings.get("rescale_factor", 1 / 255))
    if settings.get("do_normalize", True):
        mean = np.asarray(settings["image_mean"], dtype=np.float32)
        std = np.asarray(settings["image_std"], dtype=np.float32)
        pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))
