"""The checks of POST /v1/embeddings, attached to the protocol's declaration of the request.

`request_type(limits)` builds this deployment's `EmbeddingRequest`: every field gets a check that
raises the error catalogue's error (with `param` naming the bad field or item) and the JSON type
that clients send, constrained by the same limits, for the OpenAPI document. Pydantic runs the
checks in field order and lets our errors through unchanged, so the first bad field is reported.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import lru_cache, reduce
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, create_model, model_validator

from gateway.errors import InvalidRequest, ModelNotFound, Unprocessable
from gateway.images import decode_image, is_image_item
from gateway.protocol import (
    ENCODING_FORMATS,
    TRUNCATE_MODES,
    EmbeddingRequest,
    EncodingFormat,
    ImageItem,
    Limits,
    TruncateMode,
)

TOKEN_IDS = (
    "input must be text: send strings, not token ids "
    "(with LangChain's OpenAIEmbeddings set check_embedding_ctx_length=False)"
)
REQUIRED = ("model", "input")
# An optional field sent as null or left out takes its default.
DEFAULTS = {"truncate": TRUNCATE_MODES[0], "encoding_format": ENCODING_FORMATS[0]}


def parse_request(payload: object, request_type: type[EmbeddingRequest]) -> EmbeddingRequest:
    """Validate a decoded JSON body; raise `InvalidRequest` / `Unprocessable` naming the field.

    Usage: `parse_request(orjson.loads(body), request_type(Limits.of(settings, facts)))`
    """
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    # A missing model or input gets the same answer as a wrong one, from its own check.
    return request_type.model_validate({name: None for name in REQUIRED} | payload)


class _Checked(EmbeddingRequest):
    """The checks that span fields; they run after every field passed its own."""

    limits: ClassVar[Limits]

    @model_validator(mode="after")
    def _across_fields(self) -> _Checked:
        # The 422s run last so that they never hide a 400 elsewhere in the body.
        if self.instruction and self.image_positions:
            raise Unprocessable(
                "instruction applies to text only; remove it or the images", param="instruction"
            )
        capped = [
            _cap(i, item, truncate=self.truncate, limit=self.limits.max_text_chars)
            if isinstance(item, str)
            else (item, False)
            for i, item in enumerate(self.input)
        ]
        self.input = tuple(item for item, _ in capped)
        self._char_truncated = tuple(cut for _, cut in capped)
        return self


@lru_cache(maxsize=8)
def request_type(limits: Limits) -> type[EmbeddingRequest]:
    """This deployment's request: each field's check and its JSON type, from `limits`."""
    text = Annotated[
        str,
        Field(
            min_length=1,
            description=(
                f"A non-empty text. Texts over {limits.max_text_chars} characters are cut "
                "according to `truncate`."
            ),
        ),
    ]
    texts = Annotated[list[text], Field(min_length=1, max_length=limits.max_text_items)]
    shapes: list[Any] = [text, texts]
    images = ""
    if limits.supports_images:
        most = limits.max_text_items + limits.max_image_items
        shapes.append(Annotated[list[text | ImageItem], Field(min_length=1, max_length=most)])
        images = (
            f", or a mixed array of texts and images (at most {limits.max_text_items} texts and "
            f"{limits.max_image_items} images; PNG, JPEG, WebP or GIF, at most "
            f"{limits.max_image_bytes} bytes decoded and {limits.max_image_pixels} pixels each)"
        )
    fields: dict[str, tuple[Callable[..., Any], Any, str]] = {
        "model": (_model, Literal[limits.model], "The served model."),
        "input": (
            _input,
            reduce(operator.or_, shapes),
            f"A text, an array of 1-{limits.max_text_items} texts{images}. "
            "Arrays of token ids are refused.",
        ),
        "dimensions": (
            _dimensions,
            Annotated[int | None, Field(ge=1, le=limits.native_dimension)],
            "Truncate each vector to its first N dimensions and re-normalize (Matryoshka): 1 to "
            f"{limits.native_dimension}, the native dimension of {limits.model}, which is also "
            "the default.",
        ),
        "instruction": (
            _instruction,
            Annotated[str | None, Field(max_length=limits.max_instruction_chars)],
            "A task instruction prefixed to every text; text only (422 with images), never "
            "truncated.",
        ),
        "truncate": (
            _choice("truncate", TRUNCATE_MODES),
            TruncateMode | None,
            f"END keeps the first {limits.max_text_chars} characters of a longer text and its "
            "first tokens, START the last; NONE answers 422 for a text over the character or "
            "token limit.",
        ),
        "encoding_format": (
            _choice("encoding_format", ENCODING_FORMATS),
            EncodingFormat | None,
            "float: numbers; base64: little-endian float32; int8/uint8: "
            "clip(round(127 v), -127, 127) (+128 for uint8); ubinary/binary: sign bits packed 8 "
            "per byte, first dimension in the high bit (binary = ubinary - 128).",
        ),
        "user": (_user, str | None, "Accepted and ignored."),
    }
    declared = {
        name: (
            Annotated[
                EmbeddingRequest.model_fields[name].annotation,
                PlainValidator(_with(check, limits), json_schema_input_type=sent),
            ],
            Field(
                ... if name in REQUIRED else None,
                description=description,
                repr=name != "input",  # texts and images are never in a repr, so never logged
                json_schema_extra={"default": DEFAULTS[name]} if name in DEFAULTS else None,
            ),
        )
        for name, (check, sent, description) in fields.items()
    }
    model = create_model("EmbeddingRequest", __base__=_Checked, **declared)
    model.limits = limits
    return model


def _with(check: Callable[..., Any], limits: Limits) -> Callable[[object], Any]:
    return lambda value: check(value, limits)


def _model(value: object, limits: Limits) -> str:
    if value != limits.model:
        raise ModelNotFound(f"model must be {limits.model!r}, got {value!r}", param="model")
    return limits.model


def _input(value: object, limits: Limits) -> tuple[str | bytes, ...]:
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("input must not be empty", param="input")
        return (value,)
    if not isinstance(value, list):
        raise InvalidRequest("input must be a string or an array of strings", param="input")
    if not value:
        raise InvalidRequest("input must not be an empty array", param="input")
    if all(type(item) is int for item in value):
        raise InvalidRequest(TOKEN_IDS, param="input")
    images = sum(1 for item in value if is_image_item(item))
    for count, limit, kind in (
        (len(value) - images, limits.max_text_items, "text"),
        (images, limits.max_image_items, "image"),
    ):
        if count > limit:
            raise InvalidRequest(
                f"input has {count} {kind} items; at most {limit} are allowed", param="input"
            )
    return tuple(_item(i, item, limits) for i, item in enumerate(value))


def _item(i: int, item: object, limits: Limits) -> str | bytes:
    param = f"input[{i}]"
    if isinstance(item, str):
        if not item:
            raise InvalidRequest(f"{param} must not be empty", param=param)
        return item
    if is_image_item(item):
        if not limits.supports_images:
            raise InvalidRequest(
                f"{param}: image input is not supported by {limits.model}, which embeds text only",
                param=param,
            )
        return decode_image(
            item, index=i, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels
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


def _dimensions(value: object, limits: Limits) -> int:
    if value is None:
        return limits.native_dimension
    # type() rather than isinstance(): JSON true is a bool, which Python counts as an int.
    if type(value) is not int or not 1 <= value <= limits.native_dimension:
        raise InvalidRequest(
            f"dimensions must be an integer from 1 to {limits.native_dimension}, the native "
            f"dimension of {limits.model}; got {value!r}",
            param="dimensions",
        )
    return value


def _instruction(value: object, limits: Limits) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("instruction must be a string", param="instruction")
    if len(value) > limits.max_instruction_chars:
        raise InvalidRequest(
            f"instruction has {len(value)} characters; at most {limits.max_instruction_chars} "
            "are allowed",
            param="instruction",
        )
    return value


def _choice(name: str, allowed: tuple[str, ...]) -> Callable[[object, Limits], str]:
    def check(value: object, limits: Limits) -> str:
        if value is None:
            return DEFAULTS[name]
        if value not in allowed:
            raise InvalidRequest(
                f"{name} must be one of {', '.join(allowed)}; got {value!r}", param=name
            )
        return value

    return check


def _user(value: object, limits: Limits) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("user must be a string", param="user")
    return value
