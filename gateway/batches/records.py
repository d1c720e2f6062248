"""The lines of a batch's output and error files, as bytes ready to be written.

A line that was sent gets `response` with the status and the body POST /v1/embeddings answered
(the body's bytes are embedded as they were rendered, never parsed again); a line that never was
(the batch expired or was cancelled first) gets `error` instead, as OpenAI writes both.
Tests validate these lines against `objects.OutputLine`.
"""

from __future__ import annotations

import uuid

import orjson

# OpenAI's codes and words for the lines a batch never sent.
EXPIRED = (
    "batch_expired",
    "This request could not be executed before the completion window expired.",
)
CANCELLED = ("batch_cancelled", "This request was not executed because the batch was cancelled.")


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def response_record(custom_id: str, *, status_code: int, body: bytes) -> bytes:
    """The line of a request that was answered, `body` being the JSON the endpoint sent."""
    return orjson.dumps(
        {
            "id": _id("batch_req_"),
            "custom_id": custom_id,
            "response": {
                "status_code": status_code,
                "request_id": _id("req_"),
                "body": orjson.Fragment(body),
            },
            "error": None,
        }
    )


def unsent_record(custom_id: str, *, code: str, message: str) -> bytes:
    """The line of a request the batch never sent."""
    return orjson.dumps(
        {
            "id": _id("batch_req_"),
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )
