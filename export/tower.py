"""The text tower as one torch module: transformer plus pooling, exported to ONNX in one graph."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export import tensors
from export.checkpoint import Checkpoint


class PooledTextTower(nn.Module):
    """Transformer + pooling; the pooling mask is separate so instruction tokens can be left out."""

    def __init__(self, transformer: nn.Module, *, pooling: str, uses_token_type_ids: bool) -> None:
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling
        self.uses_token_type_ids = uses_token_type_ids

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        if self.uses_token_type_ids:
            input_ids, attention_mask, token_type_ids, pooling_mask = features
            kwargs = {"token_type_ids": token_type_ids}
        else:
            input_ids, attention_mask, pooling_mask = features
            kwargs = {}
        hidden = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = pooling_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def uses_token_type_ids(model_input_names: list[str]) -> bool:
    return tensors.TOKEN_TYPE_IDS in model_input_names


def export_onnx(
    transformer: nn.Module,
    checkpoint: Checkpoint,
    *,
    model_input_names: list[str],
    destination: Path,
) -> None:
    type_ids = uses_token_type_ids(model_input_names)
    tower = PooledTextTower(transformer, pooling=checkpoint.pooling, uses_token_type_ids=type_ids)
    tower.eval()
    inputs = tensors.encoder_inputs(uses_token_type_ids=type_ids)
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    destination.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {t.name: {0: "batch", 1: "sequence"} for t in inputs}
    dynamic_axes[tensors.SENTENCE_EMBEDDING] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            tower,
            example,
            str(destination),
            input_names=[t.name for t in inputs],
            output_names=[tensors.SENTENCE_EMBEDDING],
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )
