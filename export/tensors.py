"""Tensor names, dtypes and shapes shared by the exported graph and every generated config.

The gateway speaks the ensemble's names (docs/architecture.md); the integration tests check that
the names it uses are the ones written here.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVED_MODEL_NAME = "epithre-embed"
MAX_BATCH_SIZE = 64

ENSEMBLE_TEXT = "embed_text"
TEXT_PREPROCESS = "text_preprocess"
TEXT_ENCODER = "text_encoder"
POSTPROCESS = "embed_postprocess"

# Ensemble (public to the gateway).
TEXT = "TEXT"
INSTRUCTION = "INSTRUCTION"
TRUNCATE = "TRUNCATE"
DIMENSIONS = "DIMENSIONS"
EMBEDDING = "EMBEDDING"
TOKENS = "TOKENS"
TRUNCATED = "TRUNCATED"

# Encoder graph: lower-case, as the ONNX graph names them.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
POOLING_MASK = "pooling_mask"
SENTENCE_EMBEDDING = "sentence_embedding"
TOKEN_EMBEDDINGS = "token_embeddings"


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # model_config.proto DataType name, e.g. "TYPE_INT64"
    dims: tuple[int, ...]


def features(*, uses_token_type_ids: bool) -> list[Tensor]:
    """What text_preprocess produces for every text: the encoder's inputs and the pooling mask."""
    names = [INPUT_IDS, ATTENTION_MASK]
    if uses_token_type_ids:
        names.append(TOKEN_TYPE_IDS)
    names.append(POOLING_MASK)
    return [Tensor(name, "TYPE_INT64", (-1,)) for name in names]


def encoder_inputs(*, uses_token_type_ids: bool, pooled: bool) -> list[Tensor]:
    """A graph that pools takes the pooling mask; one that does not leaves it to the postprocess."""
    all_features = features(uses_token_type_ids=uses_token_type_ids)
    return all_features if pooled else [t for t in all_features if t.name != POOLING_MASK]


def encoder_output(dimension: int, *, pooled: bool) -> Tensor:
    if pooled:
        return Tensor(SENTENCE_EMBEDDING, "TYPE_FP32", (dimension,))
    return Tensor(TOKEN_EMBEDDINGS, "TYPE_FP32", (-1, dimension))
