"""The text tower of a sentence-transformers checkpoint, its pooling fused by default."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.facts import TextFacts
from export.graph import export_graph
from model_repository import wire


class PooledTransformer(nn.Module):
    """Transformer, then pooling unless `pooling` is None (the postprocess pools instead).

    A mean pools over the attention mask, or over a pooling mask when that is an input: one of
    its own lets instruction tokens be attended to but left out of the mean, as
    sentence-transformers does for `include_prompt: false`.
    """

    def __init__(self, transformer: nn.Module, *, pooling: str | None, inputs: tuple[str, ...]):
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling
        self.inputs = inputs

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.inputs, features, strict=True))
        pooling_mask = named.pop(wire.POOLING_MASK, named[wire.ATTENTION_MASK])
        hidden = self.transformer(**named).last_hidden_state
        if self.pooling is None:
            return hidden
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = pooling_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def graph_inputs(
    model_input_names: list[str], *, pooling: str, pooled_in_graph: bool, include_prompt: bool
):
    """The tokenizer's features the model takes, plus the pooling mask for a fused mean that
    leaves the instruction out; one that pools it too pools over the attention mask."""
    names = tuple(n for n in wire.TOKENIZER_FEATURES if n in model_input_names)
    if pooled_in_graph and pooling == "mean" and not include_prompt:
        names = (*names, wire.POOLING_MASK)
    return names


def export_text_tower(transformer: nn.Module, text: TextFacts, destination: Path) -> Path:
    pooling = text.pooling if text.pooled_in_graph else None
    tower = PooledTransformer(transformer, pooling=pooling, inputs=text.encoder_inputs)
    examples = {name: torch.ones(2, 8, dtype=torch.long) for name in text.encoder_inputs}
    axes = {name: {0: "batch", 1: "sequence"} for name in text.encoder_inputs}
    output = text.encoder_output.name
    axes[output] = {0: "batch"} if text.pooled_in_graph else {0: "batch", 1: "sequence"}
    return export_graph(tower, examples, output=output, dynamic_axes=axes, destination=destination)
