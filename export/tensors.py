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


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # model_config.proto DataType name, e.g. "TYPE_INT64"
    dims: tuple[int, ...]


def encoder_inputs(*, uses_token_type_ids: bool) -> list[Tensor]:
    names = [INPUT_IDS, ATTENTION_MASK]
    if uses_token_type_ids:
        names.append(TOKEN_TYPE_IDS)
    names.append(POOLING_MASK)
    return [Tensor(name, "TYPE_INT64", (-1,)) for name in names]


def encoder_output(dimension: int) -> Tensor:
    return Tensor(SENTENCE_EMBEDDING, "TYPE_FP32", (dimension,))
