"""CLIP and SigLIP checkpoints export both towers with parity, checked on tiny seeded models."""

from __future__ import annotations

import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import repository
from export.parity import FP32_MIN_COSINE
from model_repository import wire
from tests import tiny_models
from tests.unit.test_export import check_only_towers_queue


@pytest.fixture(scope="module", params=["clip", "siglip"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    checkpoint = tiny_models.build_dual(request.param, root / "checkpoint")
    return request.param, root / "repo", repository.export_repository(checkpoint, root / "repo")


def _config(path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_both_towers_export_with_fp32_parity(exported):
    _, _, report = exported
    assert report["text_parity_fp32"]["min_cosine"] >= FP32_MIN_COSINE
    assert report["image_parity_fp32"]["min_cosine"] >= FP32_MIN_COSINE
    assert report["image_parity_fp32"]["probes"] >= 5
    assert report["modalities"] == ["text", "image"]


def test_image_tower_configs_take_pixels_and_share_the_text_dimension(exported):
    _, repo, report = exported
    for name in ("config.pbtxt", "configs/production.pbtxt"):
        config = _config(repo / "image_encoder" / name)
        assert [(i.name, list(i.dims)) for i in config.input] == [("pixel_values", [3, 32, 32])]
        assert list(config.output[0].dims) == [report["native_dimension"]]
    ensemble = _config(repo / "embed_image" / "config.pbtxt")
    assert [i.name for i in ensemble.input] == ["IMAGE", "DIMENSIONS"]
    assert [o.name for o in ensemble.output] == ["EMBEDDING", "FINGERPRINT"]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "image_preprocess",
        "image_encoder",
        "embed_postprocess",
    ]


def test_siglip_texts_are_padded_to_the_full_length_and_clip_texts_are_not(exported):
    kind, repo, _ = exported
    params = _config(repo / "text_preprocess" / "config.pbtxt").parameters
    assert params["pad_to_max_tokens"].string_value == ("true" if kind == "siglip" else "false")


def test_image_preprocess_carries_the_checkpoint_processor(exported):
    kind, repo, _ = exported
    params = _config(repo / "image_preprocess" / "config.pbtxt").parameters
    processor = json.loads(params["processor"].string_value)
    assert processor.get("do_center_crop", False) == (kind == "clip")
    assert int(params["max_pixels"].string_value) == 40_000_000


def test_image_rows_keep_their_shape_and_text_rows_are_cut_by_their_attention_mask(exported):
    kind, repo, _ = exported
    image = _config(repo / "image_encoder" / "config.pbtxt")
    assert image.parameters["length_input"].string_value == ""
    text = _config(repo / "text_encoder" / "config.pbtxt")
    inputs = [i.name for i in text.input]
    # SigLIP's text tower takes no attention mask: its rows are padded to the full length.
    assert inputs == (["input_ids", "attention_mask"] if kind == "clip" else ["input_ids"])
    expected = "attention_mask" if kind == "clip" else ""
    assert text.parameters["length_input"].string_value == expected


def test_only_the_two_towers_queue_and_their_queues_honour_the_callers_timeout(exported):
    _, repo, _ = exported
    check_only_towers_queue(repo, {wire.TEXT_ENCODER, wire.IMAGE_ENCODER})
