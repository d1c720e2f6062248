"""What an export found out about a checkpoint: everything the configs are generated from."""

from __future__ import annotations

from dataclasses import dataclass, field

from export.checkpoint import DEFAULT_INSTRUCTION_TEMPLATE
from model_repository import wire

MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class TextFacts:
    encoder_inputs: tuple[str, ...]  # the text graph's inputs, in order
    dimension: int
    pooling: str  # "mean", "cls", or "model" (the model's own pooling, e.g. CLIP's EOS token)
    pooled_in_graph: bool
    max_tokens: int
    include_prompt: bool = True
    instruction_template: str = DEFAULT_INSTRUCTION_TEMPLATE
    pad_id: int = 0
    pad_to_max_tokens: bool = False  # SigLIP was trained on texts padded to its full length

    @property
    def encoder_output(self) -> wire.Tensor:
        if self.pooled_in_graph:
            return wire.Tensor(wire.SENTENCE_EMBEDDING, "FP32", (self.dimension,))
        return wire.Tensor(wire.TOKEN_EMBEDDINGS, "FP32", (-1, self.dimension))

    @property
    def preprocess_features(self) -> tuple[str, ...]:
        """The encoder's inputs, plus the pooling mask when the postprocess pools."""
        if self.pooled_in_graph:
            return self.encoder_inputs
        return (*self.encoder_inputs, wire.POOLING_MASK)

    @property
    def length_input(self) -> str:
        """The encoder input whose row sums are token lengths; "" when rows keep their shape.

        Token-level outputs must keep the request's length, so only a pooled output lets the
        tower cut rows to their own length.
        """
        if self.pooled_in_graph and wire.ATTENTION_MASK in self.encoder_inputs:
            return wire.ATTENTION_MASK
        return ""


@dataclass(frozen=True)
class ImageFacts:
    dimension: int
    image_size: int
    # Resize / crop / rescale / normalize, in the keys of a CLIP-style preprocessor_config.json.
    processor: dict = field(default_factory=dict)
    max_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class ServedFacts:
    """What the gateway reads from the text ensemble's parameters at start-up."""

    native_dimension: int
    max_tokens: int
    fingerprint: str
    modalities: tuple[str, ...]
