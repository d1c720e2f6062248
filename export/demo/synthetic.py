"""Seeded synthetic scenes (shapes, colours, counts, positions, sizes) with captions in
Indonesian and English, from a fixed grammar; training and evaluation phrase them differently."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

SHAPES = {"circle": "lingkaran", "square": "kotak", "triangle": "segitiga"}
COLOURS = {
    "red": ("merah", (220, 40, 40)),
    "blue": ("biru", (40, 80, 220)),
    "green": ("hijau", (40, 170, 60)),
    "yellow": ("kuning", (235, 200, 30)),
    "purple": ("ungu", (140, 60, 180)),
    "black": ("hitam", (25, 25, 25)),
}
COUNTS = {1: ("one", "satu"), 2: ("two", "dua"), 3: ("three", "tiga")}
POSITIONS = {
    "left": ("kiri", (0.25, 0.5)),
    "right": ("kanan", (0.75, 0.5)),
    "top": ("atas", (0.5, 0.25)),
    "bottom": ("bawah", (0.5, 0.75)),
    "center": ("tengah", (0.5, 0.5)),
}
SIZES = {"small": ("kecil", 0.09), "big": ("besar", 0.16)}
LANGUAGES = ("id", "en")


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    count: int
    position: str
    size: str

    @classmethod
    def sample(cls, rng: random.Random) -> Scene:
        return cls(
            rng.choice(list(SHAPES)),
            rng.choice(list(COLOURS)),
            rng.choice(list(COUNTS)),
            rng.choice(list(POSITIONS)),
            rng.choice(list(SIZES)),
        )


def all_scenes() -> list[Scene]:
    return [
        Scene(s, c, n, p, z)
        for s in SHAPES
        for c in COLOURS
        for n in COUNTS
        for p in POSITIONS
        for z in SIZES
    ]


def _english_noun(scene: Scene) -> str:
    noun = scene.shape if scene.count == 1 else f"{scene.shape}s"
    return noun


def training_captions(scene: Scene) -> dict[str, list[str]]:
    """Every training phrasing of `scene`, per language."""
    shape_id, (colour_id, _) = SHAPES[scene.shape], COLOURS[scene.colour]
    count_en, count_id = COUNTS[scene.count]
    pos_id, size_id = POSITIONS[scene.position][0], SIZES[scene.size][0]
    noun = _english_noun(scene)
    return {
        "id": [
            f"{count_id} {shape_id} {colour_id} di {pos_id}",
            f"{count_id} {shape_id} {colour_id} {size_id} di {pos_id}",
            f"{shape_id} {colour_id} di {pos_id}"
            if scene.count == 1
            else f"{count_id} {shape_id} {colour_id} di bagian {pos_id}",
        ],
        "en": [
            f"{count_en} {scene.colour} {noun} on the {scene.position}",
            f"{count_en} {scene.size} {scene.colour} {noun} on the {scene.position}",
            f"a {scene.colour} {scene.shape} on the {scene.position}"
            if scene.count == 1
            else f"{count_en} {scene.colour} {noun}, {scene.position} side",
        ],
    }


def evaluation_caption(scene: Scene, language: str) -> str:
    """The held-out phrasing: words from the same grammar in templates never trained on."""
    shape_id, (colour_id, _) = SHAPES[scene.shape], COLOURS[scene.colour]
    count_en, count_id = COUNTS[scene.count]
    pos_id, size_id = POSITIONS[scene.position][0], SIZES[scene.size][0]
    if language == "id":
        return f"gambar {count_id} {shape_id} {size_id} berwarna {colour_id} di sebelah {pos_id}"
    return (
        f"a picture of {count_en} {scene.size} {scene.colour} {_english_noun(scene)} "
        f"at the {scene.position}"
    )


def render(scene: Scene, rng: random.Random, *, size: int = 96) -> Image.Image:
    """Draw `scene` on a light, slightly varied background, with noise and JPEG artefacts."""
    shade = rng.randint(215, 250)
    image = Image.new("RGB", (size, size), (shade, shade, rng.randint(205, 250)))
    draw = ImageDraw.Draw(image)
    cx, cy = POSITIONS[scene.position][1]
    radius = SIZES[scene.size][1] * size * rng.uniform(0.85, 1.15)
    colour = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[scene.colour][1])
    spread = radius * 2.2
    offsets = {1: [0.0], 2: [-0.5, 0.5], 3: [-1.0, 0.0, 1.0]}[scene.count]
    horizontal = scene.position in ("top", "bottom", "center")
    for offset in offsets:
        x = cx * size + (offset * spread if horizontal else 0) + rng.uniform(-2, 2)
        y = cy * size + (0 if horizontal else offset * spread) + rng.uniform(-2, 2)
        box = (x - radius, y - radius, x + radius, y + radius)
        if scene.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif scene.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon(
                [(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], fill=colour
            )
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randint(30, 90))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image
