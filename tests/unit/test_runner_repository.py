"""A repository of links with fewer instances of some models (runner/repository.py)."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from runner.repository import with_instances

TOWER = """
name: "text_encoder"
backend: "python"
instance_group { count: 2 kind: KIND_CPU }
parameters { key: "onnx_file" value { string_value: "model.onnx" } }
"""
OTHER = 'name: "image_preprocess"\ninstance_group { count: 2 kind: KIND_CPU }\n'


def _export(root: Path) -> Path:
    for name, config in (("text_encoder", TOWER), ("image_preprocess", OTHER)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(f"# {name}")
        (root / name / "config.pbtxt").write_text(config)
    (root / "wire.py").write_text("# the wire contract")
    return root


def _config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_named_models_get_the_instance_count_and_keep_the_rest_of_their_config(
    tmp_path: Path,
) -> None:
    served = with_instances(_export(tmp_path / "export"), tmp_path / "served", {"text_encoder": 1})
    config = _config(served / "text_encoder" / "config.pbtxt")
    groups = [(g.count, g.kind) for g in config.instance_group]
    assert groups == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    assert config.backend == "python"
    assert config.parameters["onnx_file"].string_value == "model.onnx"


def test_everything_else_links_to_the_export_which_stays_untouched(tmp_path: Path) -> None:
    export = _export(tmp_path / "export")
    served = with_instances(export, tmp_path / "served", {"text_encoder": 1})
    assert (served / "text_encoder" / "1").resolve() == export / "text_encoder" / "1"
    assert (served / "text_encoder" / "1" / "model.py").read_text() == "# text_encoder"
    assert (served / "image_preprocess" / "config.pbtxt").resolve() == (
        export / "image_preprocess" / "config.pbtxt"
    )
    assert (served / "wire.py").resolve() == export / "wire.py"
    assert (export / "text_encoder" / "config.pbtxt").read_text() == TOWER


def test_a_second_build_replaces_the_first(tmp_path: Path) -> None:
    export = _export(tmp_path / "export")
    with_instances(export, tmp_path / "served", {"text_encoder": 1})
    served = with_instances(export, tmp_path / "served", {"text_encoder": 3})
    counts = [g.count for g in _config(served / "text_encoder" / "config.pbtxt").instance_group]
    assert counts == [3]
