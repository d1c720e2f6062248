"""Rendered scenes as tensors, preprocessed exactly as Triton's image_preprocess will do it."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from export.demo.synthetic import Scene, render

IMAGE_SIZE = 64
MEAN = STD = (0.5, 0.5, 0.5)
RENDER_SIZES = (64, 96, 128)


def preprocessor_config(image_size: int = IMAGE_SIZE) -> dict:
    """CLIP-style processor settings: what image_preprocess reads from the model repository."""
    return {
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(MEAN),
        "image_std": list(STD),
    }


def to_uint8(image: Image.Image, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize (bicubic, shortest edge) and center-crop; the scenes are square, so no crop cuts."""
    resized = image.resize((image_size, image_size), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def normalize(batch: np.ndarray) -> np.ndarray:
    pixels = batch.astype(np.float32) / 255.0
    mean = np.asarray(MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(STD, dtype=np.float32)[:, None, None]
    return (pixels - mean) / std


def rendered(scenes: list[Scene], *, seed: int) -> np.ndarray:
    """uint8 [n, 3, S, S] renderings of `scenes` at mixed source sizes."""
    rng = random.Random(seed)
    return np.stack([to_uint8(render(s, rng, size=rng.choice(RENDER_SIZES))) for s in scenes])
