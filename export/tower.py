"""The text tower as one torch module: the transformer, with its pooling fused by default."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export import tensors
from export.checkpoint import Checkpoint


class TextTower(nn.Module):
    """Transformer, then pooling unless `pooling` is None (the postprocess pools instead).

    The pooling mask is an input of its own so that instruction tokens can be attended to but
    left out of the mean, as sentence-transformers does for `include_prompt: false`.
    """

    def __init__(
        self, transformer: nn.Module, *, pooling: str | None, uses_token_type_ids: bool
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling
        self.uses_token_type_ids = uses_token_type_ids

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask, *rest = features
        kwargs = {"token_type_ids": rest.pop(0)} if self.uses_token_type_ids else {}
        hidden = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        if self.pooling is None:
            return hidden
        if self.pooling == "cls":
            return hidden[:, 0]
        (pooling_mask,) = rest
        weights = pooling_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def uses_token_type_ids(model_input_names: list[str]) -> bool:
    return tensors.TOKEN_TYPE_IDS in model_input_names


def export_onnx(
    transformer: nn.Module,
    checkpoint: Checkpoint,
    *,
    model_input_names: list[str],
    pooled: bool,
    destination: Path,
) -> None:
    type_ids = uses_token_type_ids(model_input_names)
    tower = TextTower(
        transformer, pooling=checkpoint.pooling if pooled else None, uses_token_type_ids=type_ids
    )
    tower.eval()
    inputs = tensors.encoder_inputs(uses_token_type_ids=type_ids, pooled=pooled)
    output = tensors.encoder_output(checkpoint.dimension, pooled=pooled)
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    destination.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {t.name: {0: "batch", 1: "sequence"} for t in inputs}
    dynamic_axes[output.name] = {0: "batch"} if pooled else {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            tower,
            example,
            str(destination),
            input_names=[t.name for t in inputs],
            output_names=[output.name],
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )
