"""The fixed caption grammar: vocabulary in English and Indonesian, training and held-out templates.

A caption names some of a scene's attributes. Every scene that shares the named attributes renders
the same string, so "the captions that describe an image" is string identity: no separate matching
rule can drift from the wording. Held-out templates frame the same words differently (other
prefixes, other position phrases), so evaluation measures more than memorised strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

LANGUAGES = ("en", "id")

SHAPES = {"circle": "lingkaran", "square": "kotak", "triangle": "segitiga", "star": "bintang"}
COLOURS = {
    "red": "merah",
    "blue": "biru",
    "green": "hijau",
    "yellow": "kuning",
    "purple": "ungu",
    "orange": "oranye",
    "black": "hitam",
}
COUNTS = {1: ("one", "satu"), 2: ("two", "dua"), 3: ("three", "tiga")}
POSITIONS = {
    "left": "kiri",
    "right": "kanan",
    "top": "atas",
    "bottom": "bawah",
    "center": "tengah",
}
SIZES = {"small": "kecil", "big": "besar"}

# Position phrases: training and evaluation never share one.
TRAIN_WHERE = {
    "en": {
        "left": "on the left",
        "right": "on the right",
        "top": "at the top",
        "bottom": "at the bottom",
        "center": "in the center",
    },
    "id": {p: f"di {word}" for p, word in POSITIONS.items()},
}
EVAL_WHERE = {
    "en": {
        "left": "on the left side",
        "right": "on the right side",
        "top": "near the top",
        "bottom": "near the bottom",
        "center": "in the middle",
    },
    "id": {
        "left": "di sebelah kiri",
        "right": "di sebelah kanan",
        "top": "di bagian atas",
        "bottom": "di bagian bawah",
        "center": "di bagian tengah",
    },
}


@dataclass(frozen=True)
class Scene:
    """What a picture shows: `count` shapes of one kind, colour and size, grouped at `position`."""

    shape: str
    colour: str
    count: int
    position: str
    size: str


@dataclass(frozen=True)
class Words:
    """One scene's words in one language (English nouns already agree with the count)."""

    count: str
    shape: str
    colour: str
    size: str
    article: str  # "a"/"one" in English before a singular noun; the count word otherwise

    @classmethod
    def of(cls, scene: Scene, language: str) -> Words:
        english, indonesian = COUNTS[scene.count]
        if language == "id":
            return cls(
                indonesian, SHAPES[scene.shape], COLOURS[scene.colour], SIZES[scene.size], ""
            )
        noun = scene.shape if scene.count == 1 else f"{scene.shape}s"
        return cls(english, noun, scene.colour, scene.size, "a" if scene.count == 1 else english)


Template = Callable[[Words, str], str]  # (words, position phrase) -> caption

TRAIN_TEMPLATES: dict[str, tuple[Template, ...]] = {
    "en": (
        lambda w, where: f"{w.count} {w.size} {w.colour} {w.shape} {where}",
        lambda w, where: f"{w.count} {w.colour} {w.shape} {where}",
        lambda w, where: f"{w.article} {w.size} {w.colour} {w.shape}",
        lambda w, where: f"{w.article} {w.colour} {w.shape}",
        lambda w, where: f"{w.colour} {w.shape} {where}",
        lambda w, where: (
            f"there {'is' if w.count == 'one' else 'are'} "
            f"{w.count} {w.size} {w.colour} {w.shape} {where}"
        ),
    ),
    "id": (
        lambda w, where: f"{w.count} {w.shape} {w.colour} {w.size} {where}",
        lambda w, where: f"{w.count} {w.shape} {w.colour} {where}",
        lambda w, where: f"{w.count} {w.shape} {w.colour} {w.size}",
        lambda w, where: f"{w.shape} {w.colour}",
        lambda w, where: f"{w.shape} {w.colour} {where}",
        lambda w, where: f"ada {w.count} {w.shape} {w.colour} {w.size} {where}",
    ),
}

# Held out: every attribute named, in a frame no training template uses.
EVAL_TEMPLATES: dict[str, Template] = {
    "en": lambda w, where: f"a picture of {w.count} {w.size} {w.colour} {w.shape} {where}",
    "id": lambda w, where: f"gambar {w.count} {w.shape} {w.colour} {w.size} {where}",
}


def training_captions(scene: Scene, language: str) -> list[str]:
    words, where = Words.of(scene, language), TRAIN_WHERE[language][scene.position]
    return [template(words, where) for template in TRAIN_TEMPLATES[language]]


def evaluation_caption(scene: Scene, language: str) -> str:
    words, where = Words.of(scene, language), EVAL_WHERE[language][scene.position]
    return EVAL_TEMPLATES[language](words, where)
