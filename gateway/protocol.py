"""The public protocol, declared once: request, response, error, model-list and status objects.

The request is declared per deployment: `validation.request_type(limits)` builds it from this
deployment's limits and the served model's facts, so that its checks and its JSON Schema (served
by gateway/openapi.py) state the same numbers. The responses are declared here and rendered by
gateway/encoding.py on the orjson + numpy path; tests validate rendered bodies against these
declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from gateway.embedder import ModelFacts
from gateway.settings import Settings
from model_repository import wire

TruncateMode = Literal["END", "START", "NONE"]
TRUNCATE_MODES: tuple[str, ...] = wire.TRUNCATE_MODES
EncodingFormat = Literal["float", "base64", "int8", "uint8", "binary", "ubinary"]
ENCODING_FORMATS: tuple[str, ...] = EncodingFormat.__args__
ItemType = Literal["text", "image"]
DATA_URI_PATTERN = "^data:[^,]*;base64,[A-Za-z0-9+/]+={0,2}$"


@dataclass(frozen=True)
class Limits:
    """Everything a request is checked against: this deployment's limits and the model's facts.

    Usage: `Limits.of(settings, facts)`
    """

    model: str
    native_dimension: int
    supports_images: bool
    max_text_items: int
    max_image_items: int
    max_text_chars: int
    max_instruction_chars: int
    max_image_bytes: int
    max_image_pixels: int
    max_body_bytes: int

    @classmethod
    def of(cls, settings: Settings, facts: ModelFacts) -> Limits:
        return cls(
            model=facts.served_model_name,
            native_dimension=facts.native_dimension,
            supports_images=facts.supports_images,
            max_text_items=settings.max_text_items,
            max_image_items=settings.max_image_items,
            max_text_chars=settings.max_text_chars,
            max_instruction_chars=settings.max_instruction_chars,
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=facts.max_image_pixels,
            max_body_bytes=settings.max_body_bytes,
        )


class _Input(BaseModel):
    """What clients send, for the JSON Schema; unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")


class ImageBase64(_Input):
    type: Literal["image"]
    image: str = Field(
        min_length=1,
        json_schema_extra={"format": "byte"},
        description=(
            "The encoded image file (PNG, JPEG, WebP or GIF) in standard base64, padded, "
            "without whitespace."
        ),
    )


class ImageDataURI(_Input):
    type: Literal["image"]
    image_url: str = Field(
        pattern=DATA_URI_PATTERN, description="A base64 data URI: `data:<mime>;base64,<payload>`."
    )


class DataURL(_Input):
    url: str = Field(
        pattern=DATA_URI_PATTERN, description="A base64 data URI; remote URLs are not fetched."
    )


class ImageURLObject(_Input):
    type: Literal["image_url"]
    image_url: DataURL


ImageItem = ImageBase64 | ImageDataURI | ImageURLObject


class EmbeddingRequest(BaseModel):
    """A validated request, fields in the contract's order (built by `validation.request_type`).

    `input` holds the texts after the character cap and the images as their encoded files.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    model: str
    input: tuple[str | bytes, ...]
    dimensions: int
    instruction: str  # "" = none
    truncate: TruncateMode
    encoding_format: EncodingFormat
    user: str | None
    # Which items the character cap cut: derived by validation, never read from the body.
    _char_truncated: tuple[bool, ...] = PrivateAttr(default=())

    @property
    def char_truncated(self) -> tuple[bool, ...]:
        return self._char_truncated

    @property
    def text_positions(self) -> list[int]:
        return [i for i, item in enumerate(self.input) if isinstance(item, str)]

    @property
    def image_positions(self) -> list[int]:
        return [i for i, item in enumerate(self.input) if isinstance(item, bytes)]


class _Output(BaseModel):
    """A body the gateway sends; any field it does not declare fails the tests' validation."""

    model_config = ConfigDict(extra="forbid")


class Embedding(_Output):
    object: Literal["embedding"]
    embedding: Annotated[
        list[float] | str | list[int],
        Field(
            description=(
                "Numbers for float, a base64 string for base64, integers for int8, uint8, "
                "binary and ubinary."
            )
        ),
    ]
    index: int = Field(ge=0)
    type: ItemType
    truncated: bool = Field(description="The item was cut at the character or token limit.")


class Usage(_Output):
    prompt_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)
    image_count: int = Field(ge=0)
    truncated_count: int = Field(ge=0)


class EmbeddingResponse(_Output):
    object: Literal["list"]
    data: list[Embedding] = Field(description="One embedding per input item, in input order.")
    model: str
    usage: Usage


class ErrorDetail(_Output):
    message: str
    type: str
    param: str | None = Field(description="The bad field or item, e.g. `input[3]`.")
    code: str | None


class Error(_Output):
    error: ErrorDetail


class Model(_Output):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    # An extra field OpenAI clients ignore.
    fingerprint: str = Field(description="sha256 of the exported model files: one per build.")


class ModelList(_Output):
    object: Literal["list"]
    data: list[Model]


class Status(_Output):
    status: str
    builds: list[str] = Field(
        default_factory=list,
        description=(
            "Readiness only: the fingerprints of the builds that answered within the last "
            "minute, in the order first seen; two during a rolling upgrade."
        ),
    )
