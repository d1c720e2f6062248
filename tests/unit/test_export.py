"""The export declares and verifies itself: tiny checkpoints of every supported family."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import configs, repository, sentence_transformer, text_tower
from export.__main__ import main as export_main
from export.parity import FP32_MIN_COSINE
from gateway.settings import Settings
from model_repository import wire
from tests import tiny_models

ONNX_TYPES = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32"}


VARIANTS = [(family, True) for family in tiny_models.FAMILIES] + [("bert", False)]


@pytest.fixture(
    scope="module",
    params=VARIANTS,
    ids=[f"{f}-pool-in-{'graph' if p else 'postprocess'}" for f, p in VARIANTS],
)
def exported(request, tmp_path_factory):
    family, pool_in_graph = request.param
    root = tmp_path_factory.mktemp(family)
    checkpoint = tiny_models.build(family, root / "checkpoint")
    report = repository.export_repository(checkpoint, root / "repo", pool_in_graph=pool_in_graph)
    return root / "repo", report


def _config(path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def _graph_tensors(values) -> list[tuple[str, str]]:
    return [(v.name, ONNX_TYPES[v.type.tensor_type.elem_type]) for v in values]


def test_every_family_exports_with_fp32_parity_in_the_report(exported):
    repo, report = exported
    written = json.loads((repo / "text_encoder" / repository.REPORT_FILE).read_text())
    assert written == report
    assert report["text_parity_fp32"]["min_cosine"] >= FP32_MIN_COSINE
    assert report["native_dimension"] == 32


@pytest.mark.parametrize("config_file", ["config.pbtxt", "configs/production.pbtxt"])
def test_tower_configs_match_the_onnx_graph(exported, config_file):
    repo, _ = exported
    config = _config(repo / "text_encoder" / config_file)
    graph = onnx.load(str(repo / "text_encoder" / "1" / "model.onnx")).graph
    configured_inputs = [(i.name, mc.DataType.Name(i.data_type)) for i in config.input]
    assert configured_inputs == _graph_tensors(graph.input)
    configured_outputs = [(o.name, mc.DataType.Name(o.data_type)) for o in config.output]
    assert configured_outputs == _graph_tensors(graph.output)
    pooled_in_graph = exported[1]["pooling_in"] == "graph"
    assert list(config.output[0].dims) == ([32] if pooled_in_graph else [-1, 32])


def test_without_pooling_in_the_graph_the_postprocess_gets_the_mask(exported):
    repo, report = exported
    postprocess = _config(repo / "embed_postprocess" / "config.pbtxt")
    names = [i.name for i in postprocess.input]
    if report["pooling_in"] == "graph":
        assert names == ["pooled_embedding", "DIMENSIONS"]
        assert report["text_parity_fp32"]["compared"] == "sentence_embedding"
    else:
        assert names == ["token_embeddings", "pooling_mask", "DIMENSIONS"]
        assert report["text_parity_fp32"]["compared"] == "token_embeddings"
    assert postprocess.parameters["pooling"].string_value == "mean"


def test_the_text_graph_takes_neither_token_types_nor_a_mask_equal_to_the_attention_mask(exported):
    repo, _ = exported
    graph = onnx.load(repo / "text_encoder" / "1" / "model.onnx").graph
    # The tiny checkpoints pool their instruction (include_prompt), so no pooling mask either.
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


def test_only_a_mean_that_leaves_the_instruction_out_takes_a_pooling_mask():
    names = ["input_ids", "token_type_ids", "attention_mask"]
    pooled = {"pooling": "mean", "pooled_in_graph": True}
    assert text_tower.graph_inputs(names, **pooled, include_prompt=True) == (
        "input_ids",
        "attention_mask",
    )
    assert text_tower.graph_inputs(names, **pooled, include_prompt=False) == (
        "input_ids",
        "attention_mask",
        "pooling_mask",
    )


def test_production_tower_runs_on_native_onnxruntime_and_local_on_python(exported):
    repo, _ = exported
    assert _config(repo / "text_encoder" / "config.pbtxt").backend == "python"
    production = _config(repo / "text_encoder" / "configs" / "production.pbtxt")
    assert (production.backend, production.default_model_filename) == ("onnxruntime", "model.onnx")


def test_ensemble_carries_the_model_facts(exported):
    repo, report = exported
    config = _config(repo / "embed_text" / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params == {
        "served_model_name": "epithre-embed",
        "native_dimension": "32",
        "max_tokens": "64",
        "fingerprint": report["fingerprint"],
        "modalities": "text",
    }
    assert [i.name for i in config.input] == ["TEXT", "INSTRUCTION", "TRUNCATE", "DIMENSIONS"]
    assert [o.name for o in config.output] == ["EMBEDDING", "TOKENS", "TRUNCATED", "FINGERPRINT"]


def test_the_postprocess_names_the_build_in_every_answer(exported):
    repo, report = exported
    postprocess = _config(repo / "embed_postprocess" / "config.pbtxt")
    assert postprocess.parameters["fingerprint"].string_value == report["fingerprint"]
    assert [(o.name, o.data_type, list(o.dims)) for o in postprocess.output] == [
        ("EMBEDDING", mc.TYPE_FP32, [-1]),
        ("FINGERPRINT", mc.TYPE_STRING, [1]),
    ]
    ensemble = _config(repo / "embed_text" / "config.pbtxt")
    last = ensemble.ensemble_scheduling.step[-1]
    assert (last.model_name, dict(last.output_map)) == (
        "embed_postprocess",
        {"EMBEDDING": "EMBEDDING", "FINGERPRINT": "FINGERPRINT"},
    )


def test_cls_pooling_is_read_from_the_pooling_config(tmp_path):
    checkpoint = tiny_models.build("bert", tmp_path / "cls", pooling="cls")
    report = repository.export_repository(checkpoint, tmp_path / "repo")
    assert report["pooling"] == "cls"
    assert report["text_parity_fp32"]["min_cosine"] >= FP32_MIN_COSINE


def test_failed_parity_fails_the_export(tmp_path, monkeypatch):
    checkpoint = tiny_models.build("bert", tmp_path / "ckpt")
    original = sentence_transformer.check_sentence_transformer
    monkeypatch.setattr(
        sentence_transformer,
        "check_sentence_transformer",
        lambda *args, **kwargs: original(*args, **{**kwargs, "threshold": 1.5}),
    )
    code = export_main(["--checkpoint", str(checkpoint), "--repository", str(tmp_path / "r")])
    assert code == 1
    assert not (tmp_path / "r" / "embed_text" / "config.pbtxt").exists()


def test_an_export_elsewhere_carries_the_python_models_and_their_wire_contract(exported):
    repo, _ = exported
    contract = (repository.SOURCE_REPOSITORY / "wire.py").read_text()
    for model in ("text_preprocess", "text_encoder", "embed_postprocess"):
        assert (repo / model / "1" / "model.py").is_file()
        assert (repo / model / "1" / "wire.py").read_text() == contract
    assert (repo / "wire.py").read_text() == contract
    assert (repo / "embed_text" / "1").is_dir()
    assert not list(repo.rglob("__pycache__"))


def test_models_are_told_their_tensors_and_pooling_by_parameters(exported):
    repo, report = exported
    pooled_in_graph = report["pooling_in"] == "graph"
    preprocess = _config(repo / "text_preprocess" / "config.pbtxt")
    token_outputs = [o.name for o in preprocess.output if o.name not in ("TOKENS", "TRUNCATED")]
    assert preprocess.parameters["token_features"].string_value == ",".join(token_outputs)
    encoder = _config(repo / "text_encoder" / "config.pbtxt")
    length_input = encoder.parameters["length_input"].string_value
    assert length_input == ("attention_mask" if pooled_in_graph else "")
    postprocess = _config(repo / "embed_postprocess" / "config.pbtxt")
    pool_tokens = postprocess.parameters["pool_tokens"].string_value
    assert pool_tokens == ("false" if pooled_in_graph else "true")


def test_local_tower_merges_requests_of_any_length_and_production_only_equal_shapes(exported):
    repo, _ = exported
    local = _config(repo / "text_encoder" / "config.pbtxt")
    production = _config(repo / "text_encoder" / "configs" / "production.pbtxt")
    assert all(i.allow_ragged_batch for i in local.input)
    assert not any(i.allow_ragged_batch for i in production.input)


def check_only_towers_queue(repo: Path, towers: set[str]) -> None:
    """Only the `towers` have a dynamic batcher, in every config file (production's too); each
    bounds its queue, rejects a request unrun once the timeout it names has passed, and takes
    realtime requests (the default priority) before batch work."""
    files = sorted(repo.glob("*/config.pbtxt")) + sorted(repo.glob("*/configs/*.pbtxt"))
    written = {str(path.relative_to(repo)): _config(path) for path in files}
    batched = {where for where, config in written.items() if config.HasField("dynamic_batching")}
    assert batched == {where for where, config in written.items() if config.name in towers}
    policies = {
        where: written[where].dynamic_batching.default_queue_policy for where in sorted(batched)
    }
    assert len(policies) == 2 * len(towers)  # config.pbtxt and configs/production.pbtxt
    expected = (mc.ModelQueuePolicy.REJECT, wire.QUEUE_TIMEOUT_US, True, configs.QUEUE_SIZE)
    assert {
        where: (
            policy.timeout_action,
            policy.default_timeout_microseconds,
            policy.allow_timeout_override,
            policy.max_queue_size,
        )
        for where, policy in policies.items()
    } == dict.fromkeys(policies, expected)
    assert {
        where: (
            written[where].dynamic_batching.priority_levels,
            written[where].dynamic_batching.default_priority_level,
        )
        for where in batched
    } == dict.fromkeys(batched, (wire.PRIORITY_LEVELS, wire.PRIORITY_REALTIME))


def test_only_the_tower_queues_and_its_queue_honours_the_callers_timeout(exported):
    repo, _ = exported
    check_only_towers_queue(repo, {wire.TEXT_ENCODER})


def test_the_queue_timeout_outlasts_the_gateways_deadline():
    # Triton honours a request's own timeout only when it is shorter than the default.
    assert Settings().request_timeout_s * 1_000_000 <= wire.QUEUE_TIMEOUT_US
