"""`python -m export.demo.evaluate`: held-out retrieval of the demo model, per language.

Held out means: scenes sampled and pictures rendered with seeds training never used, and captions
from templates training never saw ("gambar tiga segitiga hijau kecil di sebelah kanan", "a picture
of three small green triangles on the right side"). One picture per caption, all captions
distinct, so chance is k/n for recall@k. Vectors come from this process (default) or from the
running API (`--base-url`), through the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.demo import synthetic
from export.demo.embedders import Embedder, InProcess, OverHttp
from export.demo.grammar import LANGUAGES, Scene

EVAL_SEED = 7  # training uses export.demo.train.SEED; a test checks that they differ
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights"
ATTRIBUTES = ("shape", "colour", "count", "position", "size")

# (language, query, a picture that fits, a picture that does not): the ranking a user expects.
PROBES: tuple[tuple[str, str, Scene, Scene], ...] = (
    (
        "id",
        "kotak merah",
        Scene("square", "red", 1, "center", "big"),
        Scene("circle", "blue", 1, "center", "big"),
    ),
    (
        "en",
        "a red square",
        Scene("square", "red", 1, "center", "big"),
        Scene("circle", "blue", 1, "center", "big"),
    ),
    (
        "id",
        "gambar lingkaran biru",
        Scene("circle", "blue", 2, "left", "small"),
        Scene("circle", "green", 2, "left", "small"),
    ),
    (
        "en",
        "a picture of blue circles",
        Scene("circle", "blue", 2, "left", "small"),
        Scene("circle", "green", 2, "left", "small"),
    ),
    (
        "id",
        "tiga bintang kuning",
        Scene("star", "yellow", 3, "top", "big"),
        Scene("star", "yellow", 1, "top", "big"),
    ),
    (
        "en",
        "three yellow stars",
        Scene("star", "yellow", 3, "top", "big"),
        Scene("star", "yellow", 1, "top", "big"),
    ),
    (
        "id",
        "segitiga hijau di sebelah kiri",
        Scene("triangle", "green", 1, "left", "big"),
        Scene("triangle", "green", 1, "right", "big"),
    ),
    (
        "en",
        "a green triangle on the left side",
        Scene("triangle", "green", 1, "left", "big"),
        Scene("triangle", "green", 1, "right", "big"),
    ),
)


@dataclass(frozen=True)
class Retrieval:
    language: str
    captions: int
    text_to_image_r1: float
    text_to_image_r5: float
    image_to_text_r1: float
    image_to_text_r5: float
    chance_r1: float
    chance_r5: float
    # Among text->image misses: how often the top picture got each attribute wrong.
    miss_attributes: dict[str, int]


def ranks(similarity: np.ndarray) -> np.ndarray:
    """0-based rank of the matching column (the diagonal) in each row; ties count against."""
    correct = np.diag(similarity)[:, None]
    return (similarity >= correct).sum(axis=1) - 1


def retrieval(
    language: str, scenes: list[Scene], texts: np.ndarray, images: np.ndarray
) -> Retrieval:
    similarity = texts @ images.T  # row: caption, column: picture
    t2i, i2t = ranks(similarity), ranks(similarity.T)
    n = len(scenes)
    misses = {a: 0 for a in ATTRIBUTES}
    for row in np.flatnonzero(t2i > 0):
        top = scenes[int(np.argmax(similarity[row]))]
        for a in ATTRIBUTES:
            misses[a] += getattr(top, a) != getattr(scenes[row], a)
    return Retrieval(
        language=language,
        captions=n,
        text_to_image_r1=float(np.mean(t2i < 1)),
        text_to_image_r5=float(np.mean(t2i < 5)),
        image_to_text_r1=float(np.mean(i2t < 1)),
        image_to_text_r5=float(np.mean(i2t < 5)),
        chance_r1=1 / n,
        chance_r5=min(5, n) / n,
        miss_attributes=misses,
    )


def probe(embedder: Embedder, seed: int) -> list[dict]:
    scenes = [s for _, _, good, bad in PROBES for s in (good, bad)]
    pictures = synthetic.examples(scenes, seed=seed + 1000)
    images = embedder.images([synthetic.png_bytes(p.image) for p in pictures])
    queries = embedder.texts([query for _, query, _, _ in PROBES])
    results = []
    for i, (language, query, good, bad) in enumerate(PROBES):
        good_score, bad_score = (
            float(queries[i] @ images[2 * i]),
            float(queries[i] @ images[2 * i + 1]),
        )
        results.append(
            {
                "language": language,
                "query": query,
                "fits": asdict(good),
                "does_not_fit": asdict(bad),
                "margin": round(good_score - bad_score, 4),
                "ok": good_score > bad_score,
            }
        )
    return results


def evaluate(embedder: Embedder, *, scenes: int, seed: int) -> dict:
    chosen = synthetic.sample_scenes(scenes, seed=seed)
    pictures = synthetic.examples(chosen, seed=seed + 1)
    images = embedder.images([synthetic.png_bytes(p.image) for p in pictures])
    report: dict = {"seed": seed, "scenes": scenes, "retrieval": [], "examples": {}}
    for language in LANGUAGES:
        captions = [synthetic.captions(s, split="eval")[language][0] for s in chosen]
        assert len(set(captions)) == len(captions), "held-out captions must be distinct"
        texts = embedder.texts(captions)
        report["retrieval"].append(asdict(retrieval(language, chosen, texts, images)))
        report["examples"][language] = captions[:3]
    report["probes"] = probe(embedder, seed)
    return report


def print_report(report: dict, source: str) -> None:
    print(f"source: {source}   held-out seed {report['seed']}, {report['scenes']} scenes")
    print("language  captions  t->i R@1  t->i R@5  i->t R@1  i->t R@5  chance R@1  chance R@5")
    for r in report["retrieval"]:
        print(
            f"{r['language']:8}  {r['captions']:8d}  {r['text_to_image_r1']:8.3f}  "
            f"{r['text_to_image_r5']:8.3f}  {r['image_to_text_r1']:8.3f}  "
            f"{r['image_to_text_r5']:8.3f}  {r['chance_r1']:10.4f}  {r['chance_r5']:10.4f}"
        )
    for r in report["retrieval"]:
        print(
            f"{r['language']} text->image misses, wrong attribute of the top picture: "
            f"{r['miss_attributes']}"
        )
    for language, captions in report["examples"].items():
        print(f"{language} held-out captions, e.g. {captions}")
    passed = sum(p["ok"] for p in report["probes"])
    print(f"probes: {passed}/{len(report['probes'])} rank the fitting picture first")
    for p in report["probes"]:
        print(
            f"  {'ok ' if p['ok'] else 'BAD'} {p['language']} {p['query']!r}  "
            f"margin {p['margin']:+.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.demo.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="in-process source: the vision tower's folder",
    )
    parser.add_argument(
        "--base-url", help="measure the running API instead, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--model", default="epithre-embed", help="the API's model name")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("EPITHRE_API_KEY"),
        help="bearer key for the API (default: $EPITHRE_API_KEY)",
    )
    parser.add_argument(
        "--scenes",
        type=int,
        default=120,
        help="held-out scenes, one caption per language and one picture each",
    )
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if not 5 <= args.scenes <= len(synthetic.all_scenes()):
        parser.error(f"--scenes must lie in 5..{len(synthetic.all_scenes())}")

    started = time.monotonic()
    if args.base_url:
        embedder: Embedder = OverHttp(args.base_url, model=args.model, api_key=args.api_key)
        source = f"{args.base_url} (model {args.model})"
    else:
        embedder = InProcess(args.weights)
        source = f"in-process torch, weights {args.weights}"
    report = evaluate(embedder, scenes=args.scenes, seed=args.seed)
    report["source"] = source
    print_report(report, source)
    print(f"({time.monotonic() - started:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
