"""The published OpenAPI document of the API, served at GET /openapi.json.

`DOCUMENT` is built once at import; docs/openapi.json is the same dict written out (a unit test
compares them). After editing this module, regenerate it with
`python -m gateway.openapi > docs/openapi.json`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.schema import ENCODING_FORMATS, TRUNCATE_MODES
from gateway.settings import Settings

_DEFAULTS = Settings()
MODEL_NAME = "epithre-embed"
# all-MiniLM-L6-v2, the default model repository's checkpoint; other exports report their own.
NATIVE_DIMENSION = 384
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string"},
    }
}

_DATA_URI = "^data:[^,]*;base64,[A-Za-z0-9+/]+={0,2}$"

_SCHEMAS: dict[str, Any] = {
    "Text": {
        "type": "string",
        "minLength": 1,
        "description": (
            f"A non-empty text. Texts over {_DEFAULTS.max_text_chars} characters are cut "
            "according to `truncate`."
        ),
    },
    "ImageBase64": {
        "type": "object",
        "required": ["type", "image"],
        "properties": {
            "type": {"type": "string", "enum": ["image"]},
            "image": {
                "type": "string",
                "format": "byte",
                "minLength": 1,
                "description": (
                    "The encoded image file (PNG, JPEG, WebP or GIF) in standard base64, "
                    "padded, without whitespace."
                ),
            },
        },
    },
    "ImageDataURI": {
        "type": "object",
        "required": ["type", "image_url"],
        "properties": {
            "type": {"type": "string", "enum": ["image"]},
            "image_url": {
                "type": "string",
                "pattern": _DATA_URI,
                "description": "A base64 data URI: `data:<mime>;base64,<payload>`.",
            },
        },
    },
    "ImageURLObject": {
        "type": "object",
        "required": ["type", "image_url"],
        "properties": {
            "type": {"type": "string", "enum": ["image_url"]},
            "image_url": {
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": {
                        "type": "string",
                        "pattern": _DATA_URI,
                        "description": "A base64 data URI; remote URLs are not fetched.",
                    }
                },
            },
        },
    },
    "ImageItem": {
        "description": (
            "An image in one of three shapes. Accepted formats: PNG, JPEG, WebP, GIF; at most "
            f"{_DEFAULTS.max_image_bytes} bytes after base64 decoding."
        ),
        "anyOf": [_ref("ImageBase64"), _ref("ImageDataURI"), _ref("ImageURLObject")],
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "description": "Unknown fields are accepted and ignored.",
        "properties": {
            "model": {"type": "string", "enum": [MODEL_NAME]},
            "input": {
                "description": (
                    f"A text, an array of 1-{_DEFAULTS.max_text_items} texts, or a mixed array "
                    f"of texts and images (at most {_DEFAULTS.max_text_items} texts and "
                    f"{_DEFAULTS.max_image_items} images). Arrays of token ids are refused."
                ),
                "anyOf": [
                    _ref("Text"),
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": _DEFAULTS.max_text_items,
                        "items": _ref("Text"),
                    },
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": _DEFAULTS.max_text_items + _DEFAULTS.max_image_items,
                        "items": {"anyOf": [_ref("Text"), _ref("ImageItem")]},
                    },
                ],
            },
            "dimensions": {
                "type": "integer",
                "minimum": 1,
                "maximum": NATIVE_DIMENSION,
                "description": (
                    f"Truncate each vector to its first N dimensions and re-normalize "
                    f"(Matryoshka). The range is 1 to the served model's native dimension: "
                    f"{NATIVE_DIMENSION} for the default model (all-MiniLM-L6-v2), which is also "
                    "the default. A deployment of another checkpoint accepts up to its own "
                    "native dimension."
                ),
            },
            "instruction": {
                "type": "string",
                "maxLength": _DEFAULTS.max_instruction_chars,
                "description": (
                    "A task instruction prefixed to every text; text only (422 with images), "
                    "never truncated."
                ),
            },
            "truncate": {
                "type": "string",
                "enum": list(TRUNCATE_MODES),
                "default": "END",
                "description": (
                    f"END keeps the first {_DEFAULTS.max_text_chars} characters of a longer "
                    "text, START the last; NONE answers 422 for a text over the character or "
                    "token limit."
                ),
            },
            "encoding_format": {
                "type": "string",
                "enum": list(ENCODING_FORMATS),
                "default": "float",
                "description": (
                    "float: numbers; base64: little-endian float32; int8/uint8: "
                    "clip(round(127 v), -127, 127) (+128 for uint8); ubinary/binary: sign bits "
                    "packed 8 per byte, first dimension in the high bit (binary = ubinary - 128)."
                ),
            },
            "user": {"type": "string", "description": "Accepted and ignored."},
        },
    },
    "Embedding": {
        "type": "object",
        "required": ["object", "embedding", "index", "type"],
        "properties": {
            "object": {"type": "string", "enum": ["embedding"]},
            "embedding": {
                "description": (
                    "Numbers for float, a base64 string for base64, integers for int8, uint8, "
                    "binary and ubinary."
                ),
                "anyOf": [
                    {"type": "array", "items": {"type": "number"}},
                    {"type": "string", "format": "byte"},
                    {"type": "array", "items": {"type": "integer"}},
                ],
            },
            "index": {"type": "integer", "minimum": 0},
            "type": {"type": "string", "enum": ["text", "image"]},
            "truncated": {"type": "boolean"},
        },
    },
    "Usage": {
        "type": "object",
        "required": ["prompt_tokens", "total_tokens"],
        "properties": {
            "prompt_tokens": {"type": "integer", "minimum": 0},
            "total_tokens": {"type": "integer", "minimum": 0},
            "image_count": {"type": "integer", "minimum": 0},
            "truncated_count": {"type": "integer", "minimum": 0},
        },
    },
    "EmbeddingResponse": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": _ref("Embedding")},
            "model": {"type": "string"},
            "usage": _ref("Usage"),
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
            "fingerprint": {
                "type": "string",
                "description": "sha256 of the exported model files: one per build.",
            },
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {
                        "type": "string",
                        "nullable": True,
                        "description": "The bad field or item, e.g. `input[3]`.",
                    },
                    "code": {"type": "string", "nullable": True},
                },
            }
        },
    },
}

_UNAUTHORIZED = _error("Missing or wrong API key.")

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "Epithre embeddings API",
        "version": "1.0.0",
        "description": (
            "OpenAI-compatible embeddings of text and images in one space; vectors are "
            "L2-normalized."
        ),
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": _SCHEMAS,
    },
    # Without configured API keys the gateway accepts unauthenticated requests: {} allows that.
    "security": [{"bearer": []}, {}],
    "paths": {
        "/v1/embeddings": {
            "post": {
                "operationId": "createEmbeddings",
                "summary": "Embed texts and images",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("EmbeddingRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "One embedding per input item, in input order.",
                        "content": {JSON: {"schema": _ref("EmbeddingResponse")}},
                    },
                    "400": _error(
                        "Invalid model, JSON, input, item, image or parameter; `param` names it."
                    ),
                    "401": _UNAUTHORIZED,
                    "413": _error(
                        f"Body over {_DEFAULTS.max_body_bytes} bytes, or an image over "
                        f"{_DEFAULTS.max_image_bytes} bytes."
                    ),
                    "415": _error("Content-Type is not application/json."),
                    "422": _error(
                        "truncate NONE with a text over the character or token limit, or "
                        "instruction with an image."
                    ),
                    "429": _error("Rate limit or backend queue full.", headers=_RETRY_AFTER),
                    "503": _error("The model backend is unreachable."),
                    "504": _error("The model backend did not answer in time."),
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "The served model",
                "responses": {
                    "200": {
                        "description": "The served model (OpenAI shape) with its fingerprint.",
                        "content": {JSON: {"schema": _ref("ModelList")}},
                    },
                    "401": _UNAUTHORIZED,
                },
            }
        },
        "/health/live": {
            "get": {
                "operationId": "live",
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The process answers.",
                        "content": {JSON: {"schema": _ref("Status")}},
                    }
                },
            }
        },
        "/health/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: the backend embeds a probe",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready for traffic.",
                        "content": {JSON: {"schema": _ref("Status")}},
                    },
                    "503": _error("Draining, or the model backend cannot embed."),
                },
            }
        },
    },
}

_BODY = orjson.dumps(DOCUMENT)


def render() -> str:
    """The document as docs/openapi.json holds it."""
    return json.dumps(DOCUMENT, indent=2) + "\n"


async def document(request: Request) -> Response:
    return Response(_BODY, media_type=JSON)


if __name__ == "__main__":
    print(render(), end="")
