"""The demo vision tower: a compact CNN mapping pixels into the text tower's 384-d space."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DemoVisionTower(nn.Module):
    """[B, 3, S, S] normalized pixels -> [B, dimension]; the spatial map is flattened (not
    averaged) so that where a shape sits survives into the vector."""

    def __init__(self, *, image_size: int = 64, width: int = 32, dimension: int = 384) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width),
            _block(width, 2 * width),
            _block(2 * width, 4 * width),
            _block(4 * width, 4 * width),
        )
        cells = (image_size // 16) ** 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(4 * width * cells, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, dimension),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))


def load_vision_tower(weights_dir: Path) -> DemoVisionTower:
    from safetensors.torch import load_file

    config = json.loads((weights_dir / CONFIG_FILE).read_text())
    tower = DemoVisionTower(**config["architecture"])
    tower.load_state_dict(load_file(str(weights_dir / WEIGHTS_FILE)))
    return tower.eval()
