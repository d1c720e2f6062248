"""What a sentence-transformers checkpoint says about itself: pooling, token limit, prompts.

Read through the loaded model, so that both the older (`pooling_mode_mean_tokens: true`) and the
newer (`pooling_mode: "mean"`) layouts of `1_Pooling/config.json` are understood the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INSTRUCTION_TEMPLATE = "{instruction} "
SUPPORTED_POOLING = ("mean", "cls")


class CheckpointError(ValueError):
    """The checkpoint is not one this exporter supports."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    pooling: str
    include_prompt: bool
    max_tokens: int
    dimension: int
    instruction_template: str

    @classmethod
    def of(cls, path: Path, model) -> Checkpoint:
        """`model` is the SentenceTransformer loaded from `path`."""
        pools = [module for module in model if type(module).__name__ == "Pooling"]
        if len(pools) != 1:
            raise CheckpointError(f"{path}: expected one Pooling module, found {len(pools)}")
        (pool,) = pools
        if pool.pooling_mode not in SUPPORTED_POOLING:
            raise CheckpointError(
                f"{path}: pooling {pool.pooling_mode!r} is not one of {SUPPORTED_POOLING}"
            )
        extra = path / "config_sentence_transformers.json"
        settings = json.loads(extra.read_text()) if extra.is_file() else {}
        return cls(
            path=path,
            pooling=pool.pooling_mode,
            include_prompt=bool(pool.include_prompt),
            max_tokens=int(model.max_seq_length),
            dimension=int(model.get_embedding_dimension()),
            instruction_template=settings.get("instruction_template", DEFAULT_INSTRUCTION_TEMPLATE),
        )
