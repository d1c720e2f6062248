"""Held-out retrieval metrics of the demo model, on hand-made similarity matrices."""

from __future__ import annotations

import numpy as np

from export.demo import evaluate
from export.demo.grammar import Scene


def test_ranks_count_columns_scoring_at_least_the_match():
    similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.0], [0.0, 0.7, 0.7]])
    assert evaluate.ranks(similarity).tolist() == [0, 1, 1]  # a tie counts against


def test_retrieval_reports_recall_chance_and_the_wrong_attribute():
    scenes = [
        Scene("circle", "red", 1, "left", "big"),
        Scene("circle", "blue", 1, "left", "big"),
        Scene("star", "red", 2, "top", "small"),
    ]
    texts = np.eye(3, dtype=np.float32)
    images = np.array([[1, 0.5, 0], [0, 0.1, 0], [0, 0, 1]], dtype=np.float32)
    result = evaluate.retrieval("en", scenes, texts, images)
    assert result.text_to_image_r1 == 2 / 3  # caption 1 ranks picture 0 first
    assert result.text_to_image_r5 == 1.0
    assert result.chance_r1 == 1 / 3
    assert result.miss_attributes == {"shape": 0, "colour": 1, "count": 0, "position": 0, "size": 0}


class _Fixed:
    """An embedder that knows each picture's scene: checks the plumbing, not a model."""

    def __init__(self) -> None:
        self.images_seen = 0

    def texts(self, texts: list[str]) -> np.ndarray:
        return np.eye(len(texts), 16, dtype=np.float32)

    def images(self, pngs: list[bytes]) -> np.ndarray:
        assert all(p.startswith(b"\x89PNG") for p in pngs)
        self.images_seen += len(pngs)
        return np.eye(len(pngs), 16, dtype=np.float32)


def test_evaluate_sends_png_pictures_and_reports_each_language():
    embedder = _Fixed()
    report = evaluate.evaluate(embedder, scenes=8, seed=evaluate.EVAL_SEED)
    assert [r["language"] for r in report["retrieval"]] == ["en", "id"]
    assert all(r["text_to_image_r1"] == 1.0 for r in report["retrieval"])
    assert embedder.images_seen == 8 + 2 * len(evaluate.PROBES)
