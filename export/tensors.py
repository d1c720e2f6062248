"""Tensor names, dtypes and shapes shared by the exported graphs and every generated config.

The gateway speaks the ensembles' names (docs/architecture.md); tests/unit/test_wire_contract.py
checks that the names it uses are the ones written here.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVED_MODEL_NAME = "epithre-embed"
MAX_BATCH_SIZE = 64

ENSEMBLE_TEXT = "embed_text"
ENSEMBLE_IMAGE = "embed_image"
TEXT_PREPROCESS = "text_preprocess"
TEXT_ENCODER = "text_encoder"
IMAGE_PREPROCESS = "image_preprocess"
IMAGE_ENCODER = "image_encoder"
POSTPROCESS = "embed_postprocess"

# Ensembles (public to the gateway).
TEXT = "TEXT"
INSTRUCTION = "INSTRUCTION"
TRUNCATE = "TRUNCATE"
IMAGE = "IMAGE"
DIMENSIONS = "DIMENSIONS"
EMBEDDING = "EMBEDDING"
TOKENS = "TOKENS"
TRUNCATED = "TRUNCATED"

# Inside the repository: lower-case, as the ONNX graphs name them.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
POOLING_MASK = "pooling_mask"
SENTENCE_EMBEDDING = "sentence_embedding"
TOKEN_EMBEDDINGS = "token_embeddings"
PIXEL_VALUES = "pixel_values"
IMAGE_EMBEDDING = "image_embedding"
POOLED_EMBEDDING = "pooled_embedding"  # what embed_postprocess receives from either tower

TOKENIZER_FEATURES = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # model_config.proto DataType name, e.g. "TYPE_INT64"
    dims: tuple[int, ...]


def token_features(names: list[str] | tuple[str, ...]) -> list[Tensor]:
    return [Tensor(name, "TYPE_INT64", (-1,)) for name in names]


def pixel_values(image_size: int) -> Tensor:
    return Tensor(PIXEL_VALUES, "TYPE_FP32", (3, image_size, image_size))
