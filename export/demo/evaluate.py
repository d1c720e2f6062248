"""`python -m export.demo.evaluate [--base-url URL]`: held-out retrieval of the demo model.

A new seed, scenes drawn without repetition, captions in a phrasing never trained on. Scores
text->image and image->text recall@1 and @5 per language, beside chance. With `--base-url` every
vector comes from the running API (what the model card reports); without it, in-process torch.
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from export.demo.synthetic import LANGUAGES, all_scenes, evaluation_caption, render

SEED = 777
SCENES = 60
TEXTS_PER_REQUEST = 64
IMAGES_PER_REQUEST = 8

Embed = Callable[[list], np.ndarray]


def held_out(count: int = SCENES, *, seed: int = SEED) -> tuple[list, list[Image.Image]]:
    rng = random.Random(seed)
    scenes = rng.sample(all_scenes(), count)
    return scenes, [render(scene, rng, size=rng.choice((96, 128))) for scene in scenes]


def recall(similarity: np.ndarray, k: int) -> float:
    """Share of rows whose own column (the diagonal) is among their k best."""
    ranks = (similarity > similarity.diagonal()[:, None]).sum(axis=1)
    return float((ranks < k).mean())


def evaluate(embed_texts: Embed, embed_images: Embed, *, count: int = SCENES) -> dict:
    scenes, images = held_out(count)
    image_vectors = embed_images(images)
    results = {}
    for language in LANGUAGES:
        text_vectors = embed_texts([evaluation_caption(s, language) for s in scenes])
        similarity = text_vectors @ image_vectors.T
        results[language] = {
            "text_to_image_r1": recall(similarity, 1),
            "text_to_image_r5": recall(similarity, 5),
            "image_to_text_r1": recall(similarity.T, 1),
            "image_to_text_r5": recall(similarity.T, 5),
        }
    results["chance"] = {"r1": 1 / count, "r5": 5 / count}
    return results


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def over_http(base_url: str) -> tuple[Embed, Embed]:
    import httpx

    client = httpx.Client(base_url=base_url, timeout=120)

    def post(items: list) -> np.ndarray:
        response = client.post("/v1/embeddings", json={"model": "epithre-embed", "input": items})
        response.raise_for_status()
        return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)

    def chunked(items: list, size: int) -> np.ndarray:
        return np.concatenate([post(items[i : i + size]) for i in range(0, len(items), size)])

    def texts(captions: list[str]) -> np.ndarray:
        return chunked(captions, TEXTS_PER_REQUEST)

    def images(pictures: list[Image.Image]) -> np.ndarray:
        items = [{"type": "image", "image": _png(p)} for p in pictures]
        return chunked(items, IMAGES_PER_REQUEST)

    return texts, images


def in_process(weights_dir: Path) -> tuple[Embed, Embed]:
    import torch

    from export.demo import data
    from export.demo.train import text_tower
    from export.demo.vision import load_vision_tower

    model, tower = text_tower(), load_vision_tower(weights_dir)

    def texts(captions: list[str]) -> np.ndarray:
        return model.encode(captions, normalize_embeddings=True)

    def images(pictures: list[Image.Image]) -> np.ndarray:
        pixels = data.normalize(np.stack([data.to_uint8(p) for p in pictures]))
        with torch.no_grad():
            vectors = tower(torch.from_numpy(pixels)).numpy()
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return texts, images


def markdown(results: dict) -> str:
    chance = results["chance"]
    lines = [
        "| captions | text->image R@1 | text->image R@5 | image->text R@1 | image->text R@5 |",
        "|---|---|---|---|---|",
    ]
    for language, name in (("id", "Indonesian"), ("en", "English")):
        r = results[language]
        lines.append(
            f"| {name} | {r['text_to_image_r1']:.2f} | {r['text_to_image_r5']:.2f} "
            f"| {r['image_to_text_r1']:.2f} | {r['image_to_text_r5']:.2f} |"
        )
    lines.append(
        f"| chance | {chance['r1']:.3f} | {chance['r5']:.3f} | {chance['r1']:.3f} "
        f"| {chance['r5']:.3f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from export.demo.train import DEFAULT_OUT

    parser = argparse.ArgumentParser(prog="python -m export.demo.evaluate", description=__doc__)
    parser.add_argument("--base-url", default=None, help="score through the running API")
    parser.add_argument("--weights", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    source = over_http(args.base_url) if args.base_url else in_process(args.weights)
    print(markdown(evaluate(*source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
