"""The demo model's data and tower: seeded scenes, separate phrasings, committed weights."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
import torch

from export.demo import data
from export.demo.evaluate import held_out, recall
from export.demo.synthetic import LANGUAGES, Scene, all_scenes, evaluation_caption, render
from export.demo.synthetic import training_captions as captions_for_training
from export.demo.train import DEFAULT_OUT
from export.demo.vision import WEIGHTS_FILE, DemoVisionTower, load_vision_tower

SCENE = Scene("circle", "red", 2, "left", "big")


def test_rendering_is_seeded():
    first = np.asarray(render(SCENE, random.Random(3)))
    second = np.asarray(render(SCENE, random.Random(3)))
    np.testing.assert_array_equal(first, second)


def test_captions_speak_both_languages_from_one_grammar():
    captions = captions_for_training(SCENE)
    assert "dua lingkaran merah di kiri" in captions["id"]
    assert "two red circles on the left" in captions["en"]


def test_evaluation_phrasing_is_never_a_training_phrasing():
    for scene in all_scenes():
        trained = {c for lang in LANGUAGES for c in captions_for_training(scene)[lang]}
        assert not trained & {evaluation_caption(scene, lang) for lang in LANGUAGES}


def test_held_out_set_has_at_least_50_distinct_captions_per_language():
    scenes, images = held_out()
    assert len(images) == len(scenes) >= 50
    for language in LANGUAGES:
        assert len({evaluation_caption(s, language) for s in scenes}) == len(scenes)


def test_recall_counts_the_diagonal_within_k():
    similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.0], [0.0, 0.1, 0.7]])
    assert recall(similarity, 1) == pytest.approx(2 / 3)
    assert recall(similarity, 2) == 1.0


def test_tower_maps_pixels_to_the_text_dimension():
    tower = DemoVisionTower().eval()
    with torch.no_grad():
        assert tower(torch.zeros(3, 3, data.IMAGE_SIZE, data.IMAGE_SIZE)).shape == (3, 384)


def test_committed_weights_load_and_match_the_model_card():
    tower = load_vision_tower(DEFAULT_OUT)
    digest = hashlib.sha256((DEFAULT_OUT / WEIGHTS_FILE).read_bytes()).hexdigest()
    card = (DEFAULT_OUT.parents[2] / "docs" / "demo-model.md").read_text()
    assert digest in card
    assert sum(p.numel() for p in tower.parameters()) < 3_000_000
