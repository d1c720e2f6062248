"""The demo vision tower: shapes, the committed weights, and pixels as the server makes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export.demo import preprocess, synthetic
from export.demo.vision import (
    CONFIG_FILE,
    PREPROCESSOR_FILE,
    WEIGHTS_FILE,
    DemoVisionTower,
    load_vision_tower,
)

WEIGHTS = Path(__file__).resolve().parents[2] / "export" / "demo" / "weights"


def test_the_tower_maps_pixels_to_the_text_dimension():
    tower = DemoVisionTower(image_size=64).eval()
    with torch.no_grad():
        out = tower(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 384)
    assert out.dtype == torch.float32


def test_the_committed_weights_load_small_and_consistent():
    config = json.loads((WEIGHTS / CONFIG_FILE).read_text())
    processor = json.loads((WEIGHTS / PREPROCESSOR_FILE).read_text())
    assert (WEIGHTS / WEIGHTS_FILE).stat().st_size < 8 * 1024 * 1024
    size = config["image_size"]
    assert processor["crop_size"] == {"height": size, "width": size}
    assert processor["size"] == {"shortest_edge": size}
    assert processor == preprocess.preprocessor_config(size)
    tower = load_vision_tower(WEIGHTS)
    assert not tower.training
    pixels = torch.from_numpy(
        preprocess.pixel_values(
            [e.image for e in synthetic.examples(synthetic.sample_scenes(4, seed=1), seed=1)],
            size,
        )
    )
    with torch.no_grad():
        alone, together = tower(pixels[:1]), tower(pixels)
    assert together.shape == (4, config["architecture"]["dimension"])
    assert torch.isfinite(together).all()
    torch.testing.assert_close(alone[0], together[0], rtol=1e-4, atol=1e-4)  # eval-mode BN


def test_training_pixels_equal_clip_image_processor_pixels():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(**preprocess.preprocessor_config())
    pictures = [e.image for e in synthetic.examples(synthetic.sample_scenes(12, seed=2), seed=2)]
    assert any(p.width != p.height for p in pictures)  # the crop is exercised
    ours = preprocess.pixel_values(pictures)
    reference = processor(images=pictures, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_the_committed_tower_exports_to_onnx_with_a_dynamic_batch(tmp_path):
    import onnxruntime

    tower = load_vision_tower(WEIGHTS)
    path = tmp_path / "vision.onnx"
    torch.onnx.export(
        tower,
        (torch.zeros(2, 3, 64, 64),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["pixel_values"],
        output_names=["image_embedding"],
        dynamic_axes={"pixel_values": {0: "batch"}, "image_embedding": {0: "batch"}},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pictures = [e.image for e in synthetic.examples(synthetic.sample_scenes(5, seed=3), seed=3)]
    pixels = preprocess.pixel_values(pictures)
    with torch.no_grad():
        expected = tower(torch.from_numpy(pixels)).numpy()
    for batch in (pixels[:1], pixels):
        (got,) = session.run(None, {"pixel_values": batch})
        cosine = (got * expected[: len(batch)]).sum(-1) / (
            np.linalg.norm(got, axis=-1) * np.linalg.norm(expected[: len(batch)], axis=-1)
        )
        assert cosine.min() >= 0.9999


def test_the_model_card_names_the_committed_weights():
    import hashlib

    digest = hashlib.sha256((WEIGHTS / WEIGHTS_FILE).read_bytes()).hexdigest()
    card = WEIGHTS.parents[2] / "docs" / "demo-model.md"
    assert digest in card.read_text()
