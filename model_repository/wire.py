"""The wire contract between the gateway and Triton, declared once.

Names of the ensembles and of the models composing them, the timeouts and keepalive both sides
keep, every tensor with its dtype, the truncate modes, every config parameter key, and the
per-item error kinds with their encoding.
Export writes configs from it, the gateway calls Triton with it, and every Python model reads its
tensors and parameters through it: each `model_repository/<model>/1/wire.py` is a link to this
file, and `tests/unit/test_wire_contract.py` fails on a name used anywhere that is not declared
here. Standard library only and Python 3.10 clean: Triton's Python stub runs the production
container's python3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# The served model's public name (the ensemble states it as a parameter).
SERVED_MODEL_NAME = "epithre-embed"

# Ensembles the gateway calls, and the models inside them.
ENSEMBLE_TEXT = "embed_text"
ENSEMBLE_IMAGE = "embed_image"
TEXT_PREPROCESS = "text_preprocess"
TEXT_ENCODER = "text_encoder"
IMAGE_PREPROCESS = "image_preprocess"
IMAGE_ENCODER = "image_encoder"
POSTPROCESS = "embed_postprocess"

# Batch limits of the ensembles: texts per Triton request, images per merged execution.
MAX_TEXT_BATCH = 64
MAX_IMAGE_BATCH = 16

# How long a call may wait, and how soon a lost Triton is noticed. The queue timeout of the towers
# (the models with a dynamic batcher): a request that names none may wait this long in a tower's
# queue. The gateway names its remaining deadline instead (the request parameter REQUEST_TIMEOUT,
# in microseconds), which Triton honours only when it is shorter than this: so this outlasts any
# deadline the gateway keeps (EPITHRE_REQUEST_TIMEOUT_S, 30 s by default), and a request whose
# caller has given up is rejected unrun with UNAVAILABLE "Request timeout expired".
QUEUE_TIMEOUT_US = 600 * 1_000_000
# The gateway's gRPC keepalive: a ping every KEEPALIVE_TIME_MS, calls in flight or not, and the
# connection given up when one is unanswered after KEEPALIVE_TIMEOUT_MS, so that the calls in
# flight to a stopped or vanished Triton fail within about two seconds instead of at their
# deadline. The wait for the ack is the channel's `grpc.http2.ping_timeout_ms` (60 s unless set):
# grpcio 1.85 did not apply `grpc.keepalive_timeout_ms` to it, and a call to a SIGSTOPped Triton
# ran to its deadline. Triton is started to accept pings this frequent (runner/triton.py
# locally, deploy/triton-entrypoint.sh in production): its default policy answers them with
# GOAWAY too_many_pings, which ends the calls in flight too.
KEEPALIVE_TIME_MS = 1_000
KEEPALIVE_TIMEOUT_MS = 1_000
# Priorities of the towers' queues (the models with a dynamic batcher; the ensemble passes a
# request's priority to every step, and the models without a batcher run each request at once):
# realtime requests, the default, are taken before any queued batch work.
PRIORITY_LEVELS = 2
PRIORITY_REALTIME = 1
PRIORITY_BATCH = 2
# Triton's request parameters that carry a call's priority and its queue timeout.
REQUEST_PRIORITY = "priority"
REQUEST_TIMEOUT = "timeout"


@dataclass(frozen=True)
class Tensor:
    """One tensor: its name, its Triton dtype ("BYTES", "INT32", ...) and its dims per row."""

    name: str
    dtype: str
    dims: tuple[int, ...] = (1,)

    @property
    def config_type(self) -> str:
        """The `model_config.proto` DataType name, e.g. "TYPE_INT32"; BYTES is TYPE_STRING."""
        return "TYPE_STRING" if self.dtype == "BYTES" else f"TYPE_{self.dtype}"


# The ensembles' tensors: what the gateway sends and receives.
TEXT = Tensor("TEXT", "BYTES")  # UTF-8, already capped in characters by the gateway
INSTRUCTION = Tensor("INSTRUCTION", "BYTES")  # "" = none
TRUNCATE = Tensor("TRUNCATE", "BYTES")  # one of TRUNCATE_MODES
DIMENSIONS = Tensor("DIMENSIONS", "INT32")  # Matryoshka size; NATIVE_DIMENSIONS = native
IMAGE = Tensor("IMAGE", "BYTES")  # one encoded image file
EMBEDDING = Tensor("EMBEDDING", "FP32", (-1,))  # L2-normalized
TOKENS = Tensor("TOKENS", "INT32")  # tokens fed to the encoder, special and instruction included
TRUNCATED = Tensor("TRUNCATED", "BOOL")  # cut at the model's token limit
# The fingerprint of the build that computed the answer, the same on every row. Two Tritons behind
# one gateway can serve different exports under one name during a rolling upgrade, and Triton
# 24.10's Python backend has no response parameters: so each answer names its build in a tensor.
FINGERPRINT = Tensor("FINGERPRINT", "BYTES")

TEXT_INPUTS = (TEXT, INSTRUCTION, TRUNCATE, DIMENSIONS)
TEXT_OUTPUTS = (EMBEDDING, TOKENS, TRUNCATED, FINGERPRINT)
IMAGE_INPUTS = (IMAGE, DIMENSIONS)
IMAGE_OUTPUTS = (EMBEDDING, FINGERPRINT)

NATIVE_DIMENSIONS = 0
TRUNCATE_END, TRUNCATE_START, TRUNCATE_NONE = "END", "START", "NONE"
TRUNCATE_MODES = (TRUNCATE_END, TRUNCATE_START, TRUNCATE_NONE)

# Tensors inside the repository, named as the exported ONNX graphs name them.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POOLING_MASK = "pooling_mask"  # attention mask less the instruction, when it is not pooled
# The tokenizer's features the text graphs take. Not token_type_ids: a single sequence's are all
# zeros, which the models assume when given none, and each tensor handed between the Python
# models costs a lone request time in both.
TOKENIZER_FEATURES = (INPUT_IDS, ATTENTION_MASK)
SENTENCE_EMBEDDING = "sentence_embedding"
TOKEN_EMBEDDINGS = "token_embeddings"
PIXEL_VALUES = "pixel_values"
IMAGE_EMBEDDING = "image_embedding"
POOLED_EMBEDDING = "pooled_embedding"  # what embed_postprocess receives from either tower

# Config parameter keys (string values), by the model that reads them.
# embed_text: the model facts the gateway reads at start-up.
P_SERVED_MODEL_NAME = "served_model_name"
P_NATIVE_DIMENSION = "native_dimension"
P_MAX_TOKENS = "max_tokens"
P_FINGERPRINT = "fingerprint"
P_MODALITIES = "modalities"  # "text" or "text,image"
# text_preprocess (also P_MAX_TOKENS).
P_TOKENIZER_FILE = "tokenizer_file"
P_INSTRUCTION_TEMPLATE = "instruction_template"
P_INCLUDE_PROMPT = "include_prompt"
P_PAD_ID = "pad_id"
P_PAD_TO_MAX_TOKENS = "pad_to_max_tokens"
P_TOKEN_FEATURES = "token_features"  # comma-separated token tensors handed to the encoder
# The Python ONNX Runtime towers.
P_ONNX_FILE = "onnx_file"
P_INTRA_OP_THREADS = "intra_op_threads"
# Threads of a run while no other instance of the tower computes (0 = every core the stub has).
P_SOLO_THREADS = "solo_threads"
P_ALLOW_SPINNING = "allow_spinning"
P_CHUNK_ROWS = "chunk_rows"
P_PARALLEL_CHUNKS = "parallel_chunks"
# The input whose row sums are the token lengths, so that rows can be cut to their own length;
# "" for towers whose rows must keep their shape (images, token-level outputs).
P_LENGTH_INPUT = "length_input"
# image_preprocess: the preprocessor's settings (JSON) and the bomb guard, which the gateway
# also applies from the image header before anything reaches Triton.
P_PROCESSOR = "processor"
P_MAX_PIXELS = "max_pixels"
# embed_postprocess (also P_NATIVE_DIMENSION, and P_FINGERPRINT: the build it names in every
# answer's FINGERPRINT). P_POOL_TOKENS is "true" when it pools token states itself.
P_POOLING = "pooling"
P_POOL_TOKENS = "pool_tokens"

TRUE, FALSE = "true", "false"


def flag(value: bool) -> str:
    """A boolean as a parameter value."""
    return TRUE if value else FALSE


# Per-item failures travel as a TritonError whose message holds ERROR_MARKER and a JSON object
# {"kind", "item", ...details}: Triton prefixes the ensemble's own text and keeps only a code and
# a message, so the payload is found by its marker, never parsed from prose.
ERROR_MARKER = "epithre-item-error:"
# A text over the model's token limit with truncate NONE; details: tokens, limit.
TOKEN_LIMIT = "token_limit"
# An image the preprocess cannot decode or refuses; details: reason (for the client).
INVALID_IMAGE = "invalid_image"
ERROR_KINDS = (TOKEN_LIMIT, INVALID_IMAGE)


@dataclass(frozen=True)
class ItemError:
    """A per-item failure: `item` is the row inside the Triton request."""

    kind: str
    item: int
    details: dict

    def encode(self) -> str:
        return ERROR_MARKER + json.dumps({**self.details, "kind": self.kind, "item": self.item})

    @classmethod
    def decode(cls, message: str) -> ItemError | None:
        """The error a model encoded into `message`, or None when it holds none."""
        at = message.find(ERROR_MARKER)
        if at < 0:
            return None
        try:
            payload, _ = json.JSONDecoder().raw_decode(message, at + len(ERROR_MARKER))
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        kind, item = payload.pop("kind", None), payload.pop("item", None)
        if kind not in ERROR_KINDS or type(item) is not int:
            return None
        return cls(kind=kind, item=item, details=payload)
