"""The one error catalogue: every failure the API reports, its status and its OpenAI-shaped body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.protocol import Error, ErrorDetail

RETRY_AFTER = "Retry-After"


class APIError(Exception):
    """An error the client sees as `{"error": {"message", "type", "param", "code"}}`.

    `description` says when it happens, in the OpenAPI document; `documented_headers` names the
    headers it always carries.
    """

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = "internal_error"
    description: ClassVar[str] = "An unexpected failure inside the gateway."
    documented_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> bytes:
        detail = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return Error(error=detail).model_dump_json().encode()


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"
    description = "A field, an item or an image is invalid; `param` names it."


class ModelNotFound(InvalidRequest):
    code = "model_not_found"
    description = "`model` is not the served model."


class InvalidJSON(InvalidRequest):
    code = "invalid_json"
    description = "The body is not UTF-8 JSON."


class Unauthorized(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    description = "Missing or wrong API key."
    documented_headers = ("WWW-Authenticate",)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class BodyTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"
    description = "The body is over its byte limit."


class ItemTooLarge(BodyTooLarge):
    """One item (a decoded image) over its own limit; `param` names it."""

    code = "item_too_large"
    description = "An image is over its decoded byte limit; `param` names it."


class FileTooLarge(BodyTooLarge):
    code = "file_too_large"
    description = "The uploaded file is over its byte limit."


class QuotaExceeded(APIError):
    """A key's stored files would pass its quota. 413 and not 429: waiting frees nothing (the
    OpenAI SDK retries 429s, and would upload the file again), and like the file cap it refuses
    a body while it streams; deleting files makes room."""

    status = 413
    type = "invalid_request_error"
    code = "storage_quota_exceeded"
    description = "The API key's stored files would exceed its quota; delete files to make room."


class ResourceNotFound(APIError):
    """No such file or batch for this key: never created, deleted, expired or another key's all
    answer alike, so that a key never learns what another stored."""

    status = 404
    type = "invalid_request_error"
    code = None  # as OpenAI answers a missing file
    description = "No such object for this API key; `param` names the id."


class BatchNotCancellable(APIError):
    """The batch has ended (completed, failed, expired) or is writing its files as it ends."""

    status = 409
    type = "invalid_request_error"
    code = None  # as OpenAI answers the cancel of a completed batch
    description = "The batch has ended, or is ending, and can no longer be cancelled."


class InvalidForm(InvalidRequest):
    code = "invalid_multipart"
    description = "The multipart/form-data body is malformed or its fields are out of order."


class RequestTimeout(APIError):
    """The body came slower than its route's floor, or not within its deadline."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    description = "The body arrived too slowly; the connection is closed."

    def headers(self) -> dict[str, str]:
        # What was sent of the body is unread: the connection cannot carry another request.
        return {"Connection": "close"}


class UnsupportedMediaType(APIError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"
    description = "Content-Type is not application/json."


class UnsupportedUploadType(UnsupportedMediaType):
    description = "Content-Type is not multipart/form-data."


class Unprocessable(APIError):
    status = 422
    type = "invalid_request_error"
    code = "input_too_long"
    description = (
        "truncate NONE with a text over the character or token limit, or instruction with an image."
    )


class ItemError(APIError):
    """A failure of one item. The embedder raises it with `item` counting the rows of its own
    backend request; `at(positions)` gives the same error naming the API's `input[...]`."""

    def __init__(self, message: str, *, item: int) -> None:
        super().__init__(message, param=f"input[{item}]")
        self.item = item

    def at(self, positions: Sequence[int]) -> APIError:
        if not 0 <= self.item < len(positions):
            # The backend named a row its request does not have: a bug report, not the client's.
            return BackendError(f"the model backend named item {self.item} of {len(positions)}")
        return self.renamed(positions[self.item])

    def renamed(self, index: int) -> ItemError:
        raise NotImplementedError


class TokenLimitExceeded(ItemError, Unprocessable):
    """A text over the model's token limit (`truncate` NONE)."""

    def __init__(self, *, item: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"input[{item}] has {tokens} tokens, above the model's limit of {limit}; "
            "shorten it or use truncate END or START",
            item=item,
        )
        self.tokens, self.limit = tokens, limit

    def renamed(self, index: int) -> TokenLimitExceeded:
        return TokenLimitExceeded(item=index, tokens=self.tokens, limit=self.limit)


class ImageRejected(ItemError, InvalidRequest):
    """The model could not take an image (undecodable, too many pixels)."""

    code = "invalid_image"

    def __init__(self, reason: str, *, item: int) -> None:
        super().__init__(f"input[{item}]: {reason}", item=item)
        self.reason = reason

    def renamed(self, index: int) -> ImageRejected:
        return ImageRejected(self.reason, item=index)


class RetryLater(APIError):
    """Not now: `Retry-After` says in how many seconds to try again."""

    documented_headers = (RETRY_AFTER,)

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {RETRY_AFTER: str(self.retry_after)}


class Overloaded(RetryLater):
    """Admission control: the work ahead would not let this request finish in its deadline."""

    status = 429
    type = "rate_limit_error"
    code = "overloaded"
    description = (
        "The server is overloaded: the request would not finish within its deadline, or the "
        "model's queue refused it."
    )

    def __init__(self, message: str, *, retry_after: int = 1, over_share: bool = False) -> None:
        super().__init__(message, retry_after=retry_after)
        self.over_share = over_share  # refused for holding more than its share of the work


class BackendBusy(Overloaded):
    """Triton's queue is full, or the request waited in it past its deadline."""

    code = "backend_busy"


class RateLimited(RetryLater):
    """A key spent its requests or tokens per minute; `Retry-After` says when one more fits."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    description = "The key spent its requests or tokens per minute."

    def __init__(
        self, message: str, *, retry_after: int, extra_headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.extra_headers = extra_headers or {}

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **self.extra_headers}


class GatewayBusy(RetryLater):
    """This gateway process is serving as many requests as it may at once."""

    status = 503
    type = "service_unavailable_error"
    code = "gateway_busy"
    description = "This gateway process is at its cap of concurrent requests."


class BackendError(APIError):
    status = 502
    code = "backend_error"
    description = "The model backend failed to answer."


class BackendUnavailable(RetryLater):
    status = 503
    type = "service_unavailable_error"
    code = "backend_unavailable"
    description = "The model backend is unreachable or cannot embed."


class ModelUpgrading(RetryLater):
    """The parts of one request kept coming back from different builds of the model: two exports
    are served under one name (a rolling upgrade), and one response never mixes their vectors."""

    status = 503
    type = "service_unavailable_error"
    code = "model_upgrading"
    description = (
        "Two builds of the model are being served (a rolling upgrade) and the request's parts "
        "kept coming back from different ones."
    )


class Draining(RetryLater):
    """The gateway received SIGTERM and is finishing its in-flight requests."""

    status = 503
    type = "service_unavailable_error"
    code = "draining"
    description = "The gateway is shutting down."


class BackendTimeout(APIError):
    status = 504
    type = "timeout_error"
    code = "backend_timeout"
    description = "The model backend did not answer in time."


def error_response(error: APIError, request: Request) -> Response:
    headers = {**error.headers(), **_request_id(request)}
    return Response(
        error.body(),
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
    detail = ErrorDetail(message=exc.detail, type="invalid_request_error", param=None, code=None)
    return Response(
        Error(error=detail).model_dump_json().encode(),
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
