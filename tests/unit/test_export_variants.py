"""int8 and fp16 text towers: published only close to fp32, and honest about what was checked."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import repository, variants
from export.__main__ import main as export_main
from model_repository import wire
from tests import tiny_models

# The seeded tiny BERT's int8 text tower, measured on the 64 comparison texts.
TINY_INT8_MIN_COSINE = 0.99997


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_models.build("bert", tmp_path_factory.mktemp("variants") / "checkpoint")


def _export(checkpoint, repo, *options: str) -> tuple[int, dict]:
    code = export_main(["--checkpoint", str(checkpoint), "--repository", str(repo), *options])
    return code, json.loads((repo / "text_encoder" / repository.REPORT_FILE).read_text())


@pytest.fixture(scope="module")
def fp32(checkpoint, tmp_path_factory):
    repo = tmp_path_factory.mktemp("fp32")
    return repo, _export(checkpoint, repo)[1]


@pytest.fixture(scope="module")
def int8(checkpoint, tmp_path_factory):
    repo = tmp_path_factory.mktemp("int8")
    return repo, *_export(checkpoint, repo, "--variant", "int8")


def _ops(repo, name: str = variants.SERVED_FILE) -> set[str]:
    return {node.op_type for node in onnx.load(str(repo / "text_encoder" / "1" / name)).graph.node}


def _config(repo, relative: str) -> mc.ModelConfig:
    return text_format.Parse((repo / "text_encoder" / relative).read_text(), mc.ModelConfig())


def test_fp32_is_served_as_exported_and_reported_as_its_own_reference(fp32):
    repo, report = fp32
    assert report["variant"] == variants.reference_report(0.99).as_dict()
    assert _config(repo, "configs/production.pbtxt").default_model_filename == "model.onnx"
    assert "MatMulInteger" not in _ops(repo)


def test_int8_report_states_its_cosines_to_fp32(int8):
    _, _, report = int8
    section = report["variant"]
    assert section["name"] == "int8"
    assert section["min_cosine"] == pytest.approx(TINY_INT8_MIN_COSINE, abs=1e-5)
    assert section["min_cosine"] <= section["mean_cosine"] < 1.0
    assert (section["texts"], section["provider"]) == (64, "CPUExecutionProvider")
    assert section["threshold"] == 0.99  # the default of --min-cosine


def test_int8_above_the_threshold_replaces_the_served_graph(int8, fp32):
    repo, code, report = int8
    assert code == 0
    assert (report["variant"]["published"], report["variant"]["verified"]) == (True, True)
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= _ops(repo)
    assert not (repo / "text_encoder" / "1" / variants.INT8_FILE).exists()
    assert report["fingerprint"] != fp32[1]["fingerprint"]


def test_int8_keeps_the_feed_forward_down_projections_in_fp32(int8):
    repo, _, _ = int8
    graph = onnx.load(str(repo / "text_encoder" / "1" / "model.onnx")).graph
    float_projections = [n.name for n in graph.node if n.op_type == "MatMul" and "dense" in n.name]
    assert float_projections == [
        f"/transformer/encoder/layer.{layer}/output/dense/MatMul" for layer in (0, 1)
    ]


def test_int8_below_the_threshold_is_refused_and_fp32_stays_served(checkpoint, fp32, tmp_path):
    code, report = _export(checkpoint, tmp_path, "--variant", "int8", "--min-cosine", "1.0")
    assert code == 1
    section = report["variant"]
    assert section["published"] is False
    assert section["min_cosine"] == pytest.approx(TINY_INT8_MIN_COSINE, abs=1e-5)
    assert "refused below 1.0: fp32 stays served" in section["reason"]
    assert "MatMulInteger" not in _ops(tmp_path)
    assert not (tmp_path / "text_encoder" / "1" / variants.INT8_FILE).exists()
    assert report["fingerprint"] == fp32[1]["fingerprint"]


def test_fp16_without_a_gpu_is_unverified_and_served_by_production_only(
    checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setattr(variants.ort, "get_available_providers", lambda: [variants.CPU])
    code, report = _export(checkpoint, tmp_path, "--variant", "fp16")
    section = report["variant"]
    assert code == 0
    assert (section["published"], section["verified"]) == (True, False)
    assert section["reason"].endswith("unverified: needs a run on a GPU")
    assert section["min_cosine"] > 0.9999
    production = _config(tmp_path, "configs/production.pbtxt")
    assert production.default_model_filename == variants.FP16_FILE
    local = _config(tmp_path, "config.pbtxt")
    assert local.parameters["onnx_file"].string_value == "model.onnx"
    served = onnx.load(str(tmp_path / "text_encoder" / "1" / variants.FP16_FILE)).graph
    fp32_graph = onnx.load(str(tmp_path / "text_encoder" / "1" / "model.onnx")).graph
    assert [i.type for i in served.input] == [i.type for i in fp32_graph.input]
    assert [o.type for o in served.output] == [o.type for o in fp32_graph.output]


def test_a_later_export_drops_an_earlier_fp16_graph(checkpoint, tmp_path):
    _export(checkpoint, tmp_path, "--variant", "fp16")
    code, report = _export(checkpoint, tmp_path)
    assert (code, report["variant"]["name"]) == (0, "fp32")
    assert not (tmp_path / "text_encoder" / "1" / variants.FP16_FILE).exists()


def test_token_outputs_are_judged_on_real_tokens_only():
    reference = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    candidate = np.array([[[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]])  # the last token is padding
    mask = np.array([[1, 1, 0]])
    cosines = variants.text_cosines(reference, candidate, {wire.ATTENTION_MASK: mask})
    np.testing.assert_allclose(cosines, [np.sqrt(0.5)])
