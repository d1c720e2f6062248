"""The project's own demo vision tower (export/demo), exported beside a text checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from export.checkpoint import CheckpointError
from export.dual_tower import PROCESSOR_KEYS, image_parity
from export.facts import ImageFacts
from export.graph import export_graph
from export.parity import ParityReport
from export.probes import probe_images
from model_repository import wire


def export_demo_vision(
    weights_dir: Path, destination: Path, *, text_dimension: int
) -> tuple[ImageFacts, ParityReport]:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from export.demo.vision import load_vision_tower

    tower = load_vision_tower(weights_dir)
    settings = json.loads((weights_dir / "preprocessor_config.json").read_text())
    settings = {k: v for k, v in settings.items() if k in PROCESSOR_KEYS}
    size = int(settings["crop_size"]["height"])
    image = ImageFacts(dimension=text_dimension, image_size=size, processor=settings)
    examples = {wire.PIXEL_VALUES: torch.zeros(2, 3, size, size)}
    with torch.no_grad():
        dimension = tower(examples[wire.PIXEL_VALUES]).shape[-1]
    if dimension != text_dimension:
        raise CheckpointError(
            f"{weights_dir}: vision tower outputs {dimension} dims, the text tower {text_dimension}"
        )
    axes = {wire.PIXEL_VALUES: {0: "batch"}, wire.IMAGE_EMBEDDING: {0: "batch"}}
    export_graph(
        tower, examples, output=wire.IMAGE_EMBEDDING, dynamic_axes=axes, destination=destination
    )
    parity = image_parity(tower, CLIPImageProcessorPil(**settings), destination, probe_images())
    return image, parity
