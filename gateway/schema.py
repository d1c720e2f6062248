"""The one request schema of POST /v1/embeddings: parse, validate, apply the character cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from gateway.embedder import ModelFacts, TruncateMode
from gateway.errors import InvalidRequest, ModelNotFound, Unprocessable
from gateway.settings import Settings

EncodingFormat = Literal["float", "base64"]
TRUNCATE_MODES = ("END", "START", "NONE")
ENCODING_FORMATS = ("float", "base64")
IMAGE_TYPES = ("image", "image_url")
TOKEN_IDS = (
    "input must be text: send strings, not token ids "
    "(with LangChain's OpenAIEmbeddings set check_embedding_ctx_length=False)"
)


@dataclass(frozen=True)
class EmbeddingRequest:
    """A validated request; fields in the contract's order, then what validation derived."""

    model: str
    input: tuple[str, ...]  # after the per-item character cap
    dimensions: int
    instruction: str  # "" = none
    truncate: TruncateMode
    encoding_format: EncodingFormat
    user: str | None
    char_truncated: tuple[bool, ...]  # which items the character cap cut


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
    texts = _texts(payload.get("input"), max_items=settings.max_text_items)
    dimensions = _dimensions(payload.get("dimensions"), facts=facts)
    instruction = _instruction(payload.get("instruction"), limit=settings.max_instruction_chars)
    truncate = cast(TruncateMode, _choice(payload, "truncate", TRUNCATE_MODES, default="END"))
    encoding_format = _choice(payload, "encoding_format", ENCODING_FORMATS, default="float")
    user = _user(payload.get("user"))
    # The cap runs last so that a 422 for a long text never hides a 400 elsewhere in the body.
    capped = [
        _cap(i, t, truncate=truncate, limit=settings.max_text_chars) for i, t in enumerate(texts)
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


def _texts(value: object, *, max_items: int) -> list[str]:
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
    if len(value) > max_items:
        raise InvalidRequest(
            f"input has {len(value)} items; at most {max_items} text items are allowed",
            param="input",
        )
    for i, item in enumerate(value):
        _check_item(i, item)
    return value


def _check_item(i: int, item: object) -> None:
    param = f"input[{i}]"
    if isinstance(item, str):
        if not item:
            raise InvalidRequest(f"{param} must not be empty", param=param)
    elif isinstance(item, dict) and item.get("type") in IMAGE_TYPES:
        raise InvalidRequest("image input is not supported by this model yet", param=param)
    elif isinstance(item, list):
        raise InvalidRequest(TOKEN_IDS, param=param)
    else:
        raise InvalidRequest(f"{param} must be a string", param=param)


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
