"""Seeded synthetic pictures: shapes of one colour, count, size and position on a light background,
with blur, pixel noise and JPEG artefacts, captioned in English and Indonesian from `grammar`.

The same seed gives the same pictures: training and evaluation use different seeds.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from export.demo.grammar import (
    COLOURS,
    COUNTS,
    LANGUAGES,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    evaluation_caption,
    training_captions,
)

RGB = {
    "red": (215, 35, 35),
    "blue": (40, 80, 215),
    "green": (40, 165, 60),
    "yellow": (235, 205, 30),
    "purple": (135, 55, 175),
    "orange": (245, 135, 20),
    "black": (25, 25, 25),
}
CENTRES = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "center": (0.5, 0.5),
}
# Radius as a fraction of the picture's short side: three big shapes in a row still fit inside.
RADII = {"small": 0.07, "big": 0.115}
SPACING = 3.0  # centre-to-centre distance of grouped shapes, in radii
CANVAS_SIZES = (64, 80, 96, 128)


@dataclass(frozen=True)
class Example:
    scene: Scene
    image: Image.Image


def all_scenes() -> list[Scene]:
    return [
        Scene(shape, colour, count, position, size)
        for shape in SHAPES
        for colour in COLOURS
        for count in COUNTS
        for position in POSITIONS
        for size in SIZES
    ]


def sample_scenes(n: int, *, seed: int) -> list[Scene]:
    """`n` distinct scenes (so that every caption built from them is distinct)."""
    return random.Random(seed).sample(all_scenes(), n)


def captions(scene: Scene, *, split: str) -> dict[str, list[str]]:
    """Per language: all training phrasings (split="train") or the one held-out phrasing."""
    if split == "train":
        return {lang: training_captions(scene, lang) for lang in LANGUAGES}
    if split == "eval":
        return {lang: [evaluation_caption(scene, lang)] for lang in LANGUAGES}
    raise ValueError(f"unknown split {split!r}")


def examples(scenes: list[Scene], *, seed: int) -> list[Example]:
    rng = random.Random(seed)
    return [Example(scene, render(scene, rng)) for scene in scenes]


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    # Light tones only: every shape colour, black included, must stay visible.
    base = np.array([rng.randint(200, 250) for _ in range(3)], dtype=np.float32)
    kind = rng.random()
    if kind < 0.5:
        pixels = np.broadcast_to(base, (height, width, 3))
    elif kind < 0.8:
        other = np.array([rng.randint(200, 250) for _ in range(3)], dtype=np.float32)
        ramp = np.linspace(0.0, 1.0, height if rng.random() < 0.5 else width, dtype=np.float32)
        ramp = ramp[:, None, None] if len(ramp) == height else ramp[None, :, None]
        pixels = np.broadcast_to(base + (other - base) * ramp, (height, width, 3))
    else:
        texture = np.random.default_rng(rng.getrandbits(32)).normal(0, 6, (height, width, 1))
        pixels = base + texture
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _outline(shape: str, x: float, y: float, r: float, turn: float) -> list[tuple[float, float]]:
    # Vertex radii chosen so the four shapes of one size cover similar areas.
    if shape == "square":
        corners = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        return [
            (x + 1.3 * r * math.cos(a + turn), y + 1.3 * r * math.sin(a + turn)) for a in corners
        ]
    if shape == "triangle":
        angles = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        return [
            (x + 1.5 * r * math.cos(a + turn), y + 1.5 * r * math.sin(a + turn)) for a in angles
        ]
    # A five-pointed star: outer and inner vertices alternate.
    points = []
    for k in range(10):
        radius = 1.25 * r if k % 2 == 0 else 0.5 * r
        angle = -math.pi / 2 + k * math.pi / 5 + turn
        points.append((x + radius * math.cos(angle), y + radius * math.sin(angle)))
    return points


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """One picture of `scene` on a canvas of a random size (the scene sits in its central square,
    so the processor's resize and center crop never cut a shape)."""
    side = rng.choice(CANVAS_SIZES)
    width, height = side, side
    if rng.random() < 0.3:  # some pictures are not square: the crop must cope
        longer = int(side * rng.uniform(1.05, 1.4))
        width, height = (longer, side) if rng.random() < 0.5 else (side, longer)
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    left, top = (width - side) / 2, (height - side) / 2
    cx, cy = CENTRES[scene.position]
    radius = RADII[scene.size] * side * rng.uniform(0.9, 1.1)
    colour = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in RGB[scene.colour])
    offsets = {1: (0.0,), 2: (-0.5, 0.5), 3: (-1.0, 0.0, 1.0)}[scene.count]
    across = scene.position in ("top", "bottom", "center")  # a row; left/right groups stack
    # The group moves as a whole; each shape only a little, so neighbours never touch.
    group_x, group_y = (rng.uniform(-0.03, 0.03) * side for _ in range(2))
    for offset in offsets:
        step = offset * SPACING * radius
        x = left + cx * side + group_x + (step if across else 0.0) + rng.uniform(-0.5, 0.5)
        y = top + cy * side + group_y + (0.0 if across else step) + rng.uniform(-0.5, 0.5)
        turn = math.radians(rng.uniform(-12, 12))
        if scene.shape == "circle":
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        else:
            draw.polygon(_outline(scene.shape, x, y, radius, turn), fill=colour)
    return _degrade(image, rng)


def _degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blur, sensor-like noise and JPEG artefacts, each sometimes, so no model keys on clean
    edges or exact colours."""
    if rng.random() < 0.25:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.5:
        noise = np.random.default_rng(rng.getrandbits(32)).normal(
            0, rng.uniform(2, 10), (image.height, image.width, 3)
        )
        pixels = np.asarray(image, dtype=np.float32) + noise
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randint(30, 90))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def png_bytes(image: Image.Image) -> bytes:
    """What a client sends: lossless, so served pixels match the in-process ones."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
