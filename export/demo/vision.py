"""The demo vision tower: a compact CNN mapping pixels into the frozen text tower's 384-d space."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class DemoVisionTower(nn.Module):
    """Pixel values [B, 3, S, S] -> [B, dimension], not normalized.

    Four stride-2 stages take S to S/16; the last map is flattened rather than pooled, so where a
    shape sits (a caption word) survives into the vector. Only conv/bn/relu/linear: the graph
    exports to ONNX with a dynamic batch axis.
    """

    def __init__(
        self, *, image_size: int = 64, width: int = 16, hidden: int = 256, dimension: int = 384
    ) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, not {image_size}")
        self.features = nn.Sequential(
            *_conv(3, width, 2),
            *_conv(width, width, 1),
            *_conv(width, 2 * width, 2),
            *_conv(2 * width, 2 * width, 1),
            *_conv(2 * width, 4 * width, 2),
            *_conv(4 * width, 4 * width, 1),
            *_conv(4 * width, 8 * width, 2),
        )
        cells = (image_size // 16) ** 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(8 * width * cells, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dimension),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))


def load_vision_tower(weights_dir: Path) -> DemoVisionTower:
    """The committed tower in eval mode (batch-norm running statistics, no dropout)."""
    from safetensors.torch import load_file

    config = json.loads((Path(weights_dir) / CONFIG_FILE).read_text())
    tower = DemoVisionTower(**config["architecture"])
    tower.load_state_dict(load_file(str(Path(weights_dir) / WEIGHTS_FILE)))
    return tower.eval()
