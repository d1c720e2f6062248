"""The one request schema of POST /v1/embeddings: parse, validate, apply the character cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from gateway.embedder import ModelFacts, TruncateMode
from gateway.errors import InvalidRequest, ModelNotFound, Unprocessable
from gateway.images import decode_image, is_image_item
from gateway.settings import Settings

EncodingFormat = Literal["float", "base64", "int8", "uint8", "binary", "ubinary"]
TRUNCATE_MODES = ("END", "START", "NONE")
ENCODING_FORMATS = ("float", "base64", "int8", "uint8", "binary", "ubinary")
TOKEN_IDS = (
    "input must be text: send strings, not token ids "
    "(with LangChain's OpenAIEmbeddings set check_embedding_ctx_length=False)"
)


@dataclass(frozen=True)
class EmbeddingRequest:
    """A validated request; fields in the contract's order, then what validation derived."""

    model: str
    # Texts after the character cap; images as encoded files, kept out of repr (and so of logs).
    input: tuple[str | bytes, ...] = field(repr=False)
    dimensions: int
    instruction: str  # "" = none
    truncate: TruncateMode
    encoding_format: EncodingFormat
    user: str | None
    char_truncated: tuple[bool, ...]  # which items the character cap cut

    @property
    def text_positions(self) -> list[int]:
        return [i for i, item in enumerate(self.input) if isinstance(item, str)]

    @property
    def image_positions(self) -> list[int]:
        return [i for i, item in enumerate(self.input) if isinstance(item, bytes)]


def parse_request(payload: object, *, facts: ModelFacts, settings: Settings) -> EmbeddingRequest:
    """Validate a decoded JSON body against the contract; raise `InvalidRequest` / `Unprocessable`.

    Usage: `request = parse_request(orjson.loads(body), facts=facts, settings=settings)`
    """
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = payload.get("model")
    if model != facts.served_model_name:
        raise ModelNotFound(
            f"model must be {facts.served_model_name!r}, got {model!r}", param="model"
        )
    items = _items(payload.get("input"), facts=facts, settings=settings)
    dimensions = _dimensions(payload.get("dimensions"), facts=facts)
    instruction = _instruction(payload.get("instruction"), limit=settings.max_instruction_chars)
    truncate = cast(TruncateMode, _choice(payload, "truncate", TRUNCATE_MODES, default="END"))
    encoding_format = _choice(payload, "encoding_format", ENCODING_FORMATS, default="float")
    user = _user(payload.get("user"))
    # The 422s run last so that they never hide a 400 elsewhere in the body.
    if instruction and any(isinstance(item, bytes) for item in items):
        raise Unprocessable(
            "instruction applies to text only; remove it or the images", param="instruction"
        )
    capped = [
        _cap(i, t, truncate=truncate, limit=settings.max_text_chars)
        if isinstance(t, str)
        else (t, False)
        for i, t in enumerate(items)
    ]
    return EmbeddingRequest(
        model=model,
        input=tuple(text for text, _ in capped),
        dimensions=dimensions,
        instruction=instruction,
        truncate=truncate,
        encoding_format=cast(EncodingFormat, encoding_format),
        user=user,
        char_truncated=tuple(cut for _, cut in capped),
    )


def _items(value: object, *, facts: ModelFacts, settings: Settings) -> list[str | bytes]:
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("input must not be empty", param="input")
        return [value]
    if not isinstance(value, list):
        raise InvalidRequest("input must be a string or an array of strings", param="input")
    if not value:
        raise InvalidRequest("input must not be an empty array", param="input")
    if all(type(item) is int for item in value):
        raise InvalidRequest(TOKEN_IDS, param="input")
    images = sum(1 for item in value if is_image_item(item))
    for count, limit, kind in (
        (len(value) - images, settings.max_text_items, "text"),
        (images, settings.max_image_items, "image"),
    ):
        if count > limit:
            raise InvalidRequest(
                f"input has {count} {kind} items; at most {limit} are allowed", param="input"
            )
    return [_item(i, item, facts=facts, settings=settings) for i, item in enumerate(value)]


def _item(i: int, item: object, *, facts: ModelFacts, settings: Settings) -> str | bytes:
    param = f"input[{i}]"
    if isinstance(item, str):
        if not item:
            raise InvalidRequest(f"{param} must not be empty", param=param)
        return item
    if is_image_item(item):
        if not facts.supports_images:
            raise InvalidRequest(
                f"{param}: image input is not supported by {facts.served_model_name}, "
                "which embeds text only",
                param=param,
            )
        return decode_image(
            item, index=i, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    if isinstance(item, list):
        raise InvalidRequest(TOKEN_IDS, param=param)
    raise InvalidRequest(
        f'{param} must be a string or an image object ({{"type": "image", ...}})', param=param
    )


def _cap(i: int, text: str, *, truncate: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    if truncate == "NONE":
        raise Unprocessable(
            f"input[{i}] has {len(text)} characters, above the limit of {limit} (truncate is NONE)",
            param=f"input[{i}]",
        )
    return (text[:limit] if truncate == "END" else text[-limit:]), True


def _dimensions(value: object, *, facts: ModelFacts) -> int:
    if value is None:
        return facts.native_dimension
    # type() rather than isinstance(): JSON true is a bool, which Python counts as an int.
    if type(value) is not int or not 1 <= value <= facts.native_dimension:
        raise InvalidRequest(
            f"dimensions must be an integer from 1 to {facts.native_dimension}, the native "
            f"dimension of {facts.served_model_name}; got {value!r}",
            param="dimensions",
        )
    return value


def _instruction(value: object, *, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("instruction must be a string", param="instruction")
    if len(value) > limit:
        raise InvalidRequest(
            f"instruction has {len(value)} characters; at most {limit} are allowed",
            param="instruction",
        )
    return value


def _choice(payload: dict, name: str, allowed: tuple[str, ...], *, default: str) -> str:
    value = payload.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(allowed)}; got {value!r}", param=name
        )
    return value


def _user(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("user must be a string", param="user")
    return value
