"""A model repository that serves another one's models with fewer instances of some.

The exported configs size each model for one tritonserver on the whole machine (two tower
instances fill two cores). Several servers on one machine each want fewer: this builds a
repository of links to the export whose only files of its own are the rewritten configs, so
the export stays untouched and one folder serves every server of a local cluster.

Usage:
    repository = with_instances(Path("model_repository"), Path("build/repository"),
                                {wire.TEXT_ENCODER: 1, wire.IMAGE_ENCODER: 1})
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

CONFIG = "config.pbtxt"


def instances_config(text: str, count: int) -> str:
    """`text`, a config.pbtxt, with every instance group holding `count` instances."""
    config = text_format.Parse(text, mc.ModelConfig())
    for group in config.instance_group:
        group.count = count
    return text_format.MessageToString(config)


def with_instances(source: Path, target: Path, instances: Mapping[str, int]) -> Path:
    """`target` made anew as `source` with `instances[model]` instances of each model named.

    Every other file is a link into `source` (a Python model finds its files through its own
    folder, `target/<model>/1`, which links there), so `source` is read, never written.
    """
    source = source.resolve()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if not entry.is_dir():
            (target / entry.name).symlink_to(entry)
            continue
        model = target / entry.name
        model.mkdir()
        for item in entry.iterdir():
            if item.name == CONFIG and entry.name in instances:
                config = instances_config(item.read_text(), instances[entry.name])
                (model / CONFIG).write_text(config)
            else:
                (model / item.name).symlink_to(item)
    return target
