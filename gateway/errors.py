"""The one error catalogue: every failure the API reports, its status and its OpenAI-shaped body."""

from __future__ import annotations

from typing import ClassVar

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response


class APIError(Exception):
    """An error the client sees as `{"error": {"message", "type", "param", "code"}}`."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class ModelNotFound(InvalidRequest):
    code = "model_not_found"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class Unauthorized(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class BodyTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ItemTooLarge(BodyTooLarge):
    """One item (a decoded image) over its own limit; `param` names it."""

    code = "item_too_large"


class UnsupportedMediaType(APIError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class Unprocessable(APIError):
    status = 422
    type = "invalid_request_error"
    code = "input_too_long"


class TokenLimitExceeded(Unprocessable):
    """Triton refused a text over the model's token limit (`truncate` NONE); `item` is its index."""

    def __init__(self, *, item: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"input[{item}] has {tokens} tokens, above the model's limit of {limit}; "
            "shorten it or use truncate END or START",
            param=f"input[{item}]",
        )
        self.item, self.tokens, self.limit = item, tokens, limit

    def at(self, index: int) -> TokenLimitExceeded:
        """The same error for the API's `input[index]` (Triton counted texts only)."""
        return TokenLimitExceeded(item=index, tokens=self.tokens, limit=self.limit)


class ImageRejected(InvalidRequest):
    """Triton could not take an image (undecodable, too many pixels); the caller names the item."""

    code = "invalid_image"

    def at(self, index: int) -> ImageRejected:
        """The same error naming the API's `input[index]`."""
        return ImageRejected(f"input[{index}]: {self.message}", param=f"input[{index}]")


class BackendBusy(APIError):
    status = 429
    type = "rate_limit_error"
    code = "backend_busy"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class RateLimited(APIError):
    """A key spent its requests or tokens per minute; `Retry-After` says when one more fits."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: int, extra_headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.extra_headers = extra_headers or {}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), **self.extra_headers}


class BackendError(APIError):
    status = 502
    code = "backend_error"


class BackendUnavailable(APIError):
    status = 503
    type = "service_unavailable_error"
    code = "backend_unavailable"


class Draining(APIError):
    """The gateway received SIGTERM and is finishing its in-flight requests."""

    status = 503
    type = "service_unavailable_error"
    code = "draining"


class BackendTimeout(APIError):
    status = 504
    type = "timeout_error"
    code = "backend_timeout"


def error_response(error: APIError, request: Request) -> Response:
    headers = {**error.headers(), **_request_id(request)}
    return Response(
        orjson.dumps(error.body()),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc, request)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    # Routing errors (404, 405) keep the same body shape as every other error.
    assert isinstance(exc, HTTPException)
    body = {
        "error": {
            "message": exc.detail,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    return Response(
        orjson.dumps(body),
        status_code=exc.status_code,
        headers={**(exc.headers or {}), **_request_id(request)},
        media_type="application/json",
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # The client gets no internals; Starlette re-raises `exc` afterwards so uvicorn logs it.
    return error_response(APIError("internal server error"), request)


def _request_id(request: Request) -> dict[str, str]:
    # Runs outside the request-ID middleware for unhandled errors, so it re-adds the header here.
    request_id = getattr(request.state, "request_id", None)
    return {"X-Request-ID": request_id} if request_id else {}
