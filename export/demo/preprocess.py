"""Pixels exactly as the served image path makes them, from the `preprocessor_config.json` written
beside the weights (CLIPImageProcessor semantics): train on what the server will feed the tower."""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
# Roughly the synthetic pictures' channel statistics (light backgrounds): inputs near zero mean.
MEAN = (0.8, 0.8, 0.78)
STD = (0.25, 0.25, 0.27)


def preprocessor_config(image_size: int = IMAGE_SIZE) -> dict:
    return {
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 0.00392156862745098,
        "do_normalize": True,
        "image_mean": list(MEAN),
        "image_std": list(STD),
    }


def resized_crop(image: Image.Image, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 [3, S, S]: bicubic resize of the shortest edge to S, then the central S x S."""
    image = image.convert("RGB")
    width, height = image.size
    # transformers' get_resize_output_image_size: the long edge is truncated, not rounded.
    if width <= height:
        target = (image_size, int(image_size * height / width))
    else:
        target = (int(image_size * width / height), image_size)
    image = image.resize(target, resample=Image.Resampling.BICUBIC)
    left, top = (target[0] - image_size) // 2, (target[1] - image_size) // 2
    image = image.crop((left, top, left + image_size, top + image_size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 [..., 3, S, S] -> float32 pixel values, rescaled then normalized per channel."""
    scaled = pixels.astype(np.float32) * np.float32(0.00392156862745098)
    mean = np.asarray(MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(STD, dtype=np.float32)[:, None, None]
    return (scaled - mean) / std


def pixel_values(images: list[Image.Image], image_size: int = IMAGE_SIZE) -> np.ndarray:
    """float32 [B, 3, S, S] for a list of pictures."""
    return normalize(np.stack([resized_crop(image, image_size) for image in images]))
