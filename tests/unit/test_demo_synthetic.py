"""The demo model's synthetic data: seeded pictures and a caption grammar with held-out phrasing."""

from __future__ import annotations

import numpy as np
import pytest

from export.demo import evaluate, synthetic, train
from export.demo.grammar import LANGUAGES, Scene


def _pixels(seed: int) -> list[bytes]:
    scenes = synthetic.sample_scenes(6, seed=seed)
    return [e.image.tobytes() for e in synthetic.examples(scenes, seed=seed)]


def test_the_same_seed_renders_the_same_pictures():
    assert _pixels(3) == _pixels(3)
    assert _pixels(3) != _pixels(4)


def test_pictures_vary_in_size_and_aspect():
    pictures = synthetic.examples(synthetic.all_scenes()[:60], seed=1)
    sizes = {e.image.size for e in pictures}
    assert len(sizes) > 4
    assert any(w != h for w, h in sizes)
    assert all(min(w, h) >= 64 for w, h in sizes)


def test_held_out_phrasings_never_occur_in_training():
    scenes = synthetic.all_scenes()
    for language in LANGUAGES:
        trained = {c for s in scenes for c in synthetic.captions(s, split="train")[language]}
        held_out = [synthetic.captions(s, split="eval")[language][0] for s in scenes]
        assert not trained & set(held_out)
        assert len(set(held_out)) == len(scenes)  # every attribute is named


def test_captions_follow_the_grammar_in_both_languages():
    scene = Scene("triangle", "green", 3, "right", "small")
    trained = synthetic.captions(scene, split="train")
    assert "three small green triangles on the right" in trained["en"]
    assert "tiga segitiga hijau kecil di kanan" in trained["id"]
    assert "segitiga hijau" in trained["id"]
    assert synthetic.captions(scene, split="eval") == {
        "en": ["a picture of three small green triangles on the right side"],
        "id": ["gambar tiga segitiga hijau kecil di sebelah kanan"],
    }


def test_a_vague_caption_describes_every_scene_it_fits():
    captions, describes = train.caption_bank(synthetic.all_scenes())
    fits = describes[captions.index("kotak merah")]
    scenes = [s for s, hit in zip(synthetic.all_scenes(), fits.tolist(), strict=True) if hit]
    assert len(scenes) == 3 * 5 * 2  # every count, position and size
    assert {(s.shape, s.colour) for s in scenes} == {("square", "red")}


def test_evaluation_uses_its_own_seed():
    assert evaluate.EVAL_SEED not in (train.SEED, train.SEED + 1)
    assert evaluate.EVAL_SEED + 1 != train.SEED


def test_png_round_trip_is_lossless():
    from io import BytesIO

    from PIL import Image

    picture = synthetic.examples(synthetic.sample_scenes(1, seed=0), seed=0)[0].image
    decoded = Image.open(BytesIO(synthetic.png_bytes(picture))).convert("RGB")
    assert np.array_equal(np.asarray(decoded), np.asarray(picture))


def test_unknown_split_is_refused():
    with pytest.raises(ValueError):
        synthetic.captions(synthetic.all_scenes()[0], split="test")
