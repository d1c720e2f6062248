"""CLIP and SigLIP checkpoints (transformers format): a text and a vision tower, projections
included, each exported to ONNX and checked against the PyTorch model."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.facts import ImageFacts, TextFacts
from export.graph import EAGER_ATTENTION, export_graph
from export.parity import ParityReport, compare, cosine_rows, run_onnx
from export.probes import PROBES, probe_images
from model_repository import wire

SUPPORTED = ("clip", "siglip")
PROCESSOR_KEYS = (
    "do_convert_rgb",
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)


def model_type(checkpoint_dir: Path) -> str | None:
    config = checkpoint_dir / "config.json"
    if not config.is_file() or (checkpoint_dir / "modules.json").is_file():
        return None
    kind = json.loads(config.read_text()).get("model_type")
    return kind if kind in SUPPORTED else None


class TextFeatures(nn.Module):
    def __init__(self, model: nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        return self.model.get_text_features(
            **dict(zip(self.inputs, features, strict=True))
        ).pooler_output


class ImageFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output


@dataclass(frozen=True)
class DualTower:
    kind: str
    model: nn.Module
    tokenizer: object
    processor: object
    text: TextFacts
    image: ImageFacts

    @classmethod
    def load(cls, checkpoint_dir: Path, kind: str) -> DualTower:
        from transformers import AutoModel, AutoTokenizer
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
        from transformers.models.siglip.image_processing_pil_siglip import (
            SiglipImageProcessorPil,
        )

        model = AutoModel.from_pretrained(
            checkpoint_dir, local_files_only=True, attn_implementation=EAGER_ATTENTION
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir, local_files_only=True)
        processor_class = CLIPImageProcessorPil if kind == "clip" else SiglipImageProcessorPil
        processor = processor_class.from_pretrained(checkpoint_dir, local_files_only=True)
        settings = {k: v for k, v in processor.to_dict().items() if k in PROCESSOR_KEYS}
        settings = json.loads(json.dumps(settings))  # enums and tuples as plain JSON values
        image_size = settings["crop_size"] if settings.get("do_center_crop") else settings["size"]
        dimension = int(
            model.config.projection_dim if kind == "clip" else model.config.text_config.hidden_size
        )
        accepted = inspect.signature(model.get_text_features).parameters
        text = TextFacts(
            encoder_inputs=tuple(
                n
                for n in wire.TOKENIZER_FEATURES
                if n in tokenizer.model_input_names and n in accepted
            ),
            dimension=dimension,
            pooling="model",
            pooled_in_graph=True,
            max_tokens=int(model.config.text_config.max_position_embeddings),
            pad_id=int(tokenizer.pad_token_id or 0),
            # SigLIP pools the last position and was trained on texts padded to full length.
            pad_to_max_tokens=kind == "siglip",
        )
        image = ImageFacts(
            dimension=dimension, image_size=int(image_size["height"]), processor=settings
        )
        return cls(kind, model, tokenizer, processor, text, image)

    def export_text(self, destination: Path) -> Path:
        examples = {n: torch.ones(2, 8, dtype=torch.long) for n in self.text.encoder_inputs}
        axes = {n: {0: "batch", 1: "sequence"} for n in self.text.encoder_inputs}
        axes[wire.SENTENCE_EMBEDDING] = {0: "batch"}
        return export_graph(
            TextFeatures(self.model, self.text.encoder_inputs),
            examples,
            output=wire.SENTENCE_EMBEDDING,
            dynamic_axes=axes,
            destination=destination,
        )

    def export_image(self, destination: Path) -> Path:
        size = self.image.image_size
        examples = {wire.PIXEL_VALUES: torch.zeros(2, 3, size, size)}
        axes = {wire.PIXEL_VALUES: {0: "batch"}, wire.IMAGE_EMBEDDING: {0: "batch"}}
        return export_graph(
            ImageFeatures(self.model),
            examples,
            output=wire.IMAGE_EMBEDDING,
            dynamic_axes=axes,
            destination=destination,
        )

    def text_parity(self, onnx_path: Path) -> ParityReport:
        padding = "max_length" if self.text.pad_to_max_tokens else True
        features = self.tokenizer(
            list(PROBES),
            padding=padding,
            truncation=True,
            max_length=self.text.max_tokens,
            return_tensors="pt",
        )
        feeds = {n: features[n] for n in self.text.encoder_inputs}
        with torch.no_grad():
            reference = TextFeatures(self.model, self.text.encoder_inputs)(*feeds.values())
        exported = run_onnx(onnx_path, {k: v.numpy() for k, v in feeds.items()})
        return compare(
            cosine_rows(reference.numpy(), exported),
            list(PROBES),
            compared=wire.SENTENCE_EMBEDDING,
        )

    def image_parity(self, onnx_path: Path) -> ParityReport:
        return image_parity(ImageFeatures(self.model), self.processor, onnx_path, probe_images())


def image_parity(tower: nn.Module, processor, onnx_path: Path, images: dict[str, object]):
    """`images` maps a label to a PIL image; both sides get the reference processor's pixels."""
    pixels = np.asarray(
        processor(list(images.values()), return_tensors="np")["pixel_values"], dtype=np.float32
    )
    with torch.no_grad():
        reference = tower(torch.from_numpy(pixels)).numpy()
    exported = run_onnx(onnx_path, {wire.PIXEL_VALUES: pixels})
    return compare(cosine_rows(reference, exported), list(images), compared=wire.IMAGE_EMBEDDING)
