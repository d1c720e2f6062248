"""What a sentence-transformers folder says about itself: pooling, token limit, prompts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INSTRUCTION_TEMPLATE = "{instruction} "
POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


class CheckpointError(ValueError):
    """The folder is not a sentence-transformers checkpoint this exporter supports."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    pooling: str  # "mean" or "cls"
    include_prompt: bool
    max_tokens: int
    dimension: int
    instruction_template: str

    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        modules = _json(path / "modules.json")
        pooling_dir = next(
            (m["path"] for m in modules if m["type"].endswith("models.Pooling")), None
        )
        if pooling_dir is None:
            raise CheckpointError(f"{path}: modules.json has no Pooling module")
        pooling_cfg = _json(path / pooling_dir / "config.json")
        modes = [mode for key, mode in POOLING_MODES.items() if pooling_cfg.get(key)]
        unsupported = [
            key
            for key, on in pooling_cfg.items()
            if key.startswith("pooling_mode_") and on and key not in POOLING_MODES
        ]
        if len(modes) != 1 or unsupported:
            raise CheckpointError(f"{path}: only mean or CLS pooling is supported, got {pooling_cfg}")
        st_config = _json(path / "sentence_bert_config.json")
        model_config = _json(path / "config.json")
        extra = _json_or_empty(path / "config_sentence_transformers.json")
        return cls(
            path=path,
            pooling=modes[0],
            include_prompt=bool(pooling_cfg.get("include_prompt", True)),
            max_tokens=int(st_config.get("max_seq_length") or model_config["max_position_embeddings"]),
            dimension=int(pooling_cfg["word_embedding_dimension"]),
            instruction_template=extra.get("instruction_template", DEFAULT_INSTRUCTION_TEMPLATE),
        )


def _json(path: Path) -> dict | list:
    if not path.is_file():
        raise CheckpointError(f"missing {path}")
    return json.loads(path.read_text())


def _json_or_empty(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
