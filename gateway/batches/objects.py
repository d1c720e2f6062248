"""The Batch API's objects as OpenAI declares them: the batch, its list, the create request and
the lines of the output and error files.

Fields are in the order of OpenAI's API reference, so that `openai.types.Batch` parses ours; the
SDK's own types (openai/types/batch*.py) are the reference the unit tests hold these against.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.protocol import _Output

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
# The statuses a batch ends in; it never leaves one.
TERMINAL: tuple[BatchStatus, ...] = ("failed", "completed", "expired", "cancelled")
ENDPOINT = "/v1/embeddings"
COMPLETION_WINDOW = "24h"

MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=16, description="Up to 16 keys of at most 64 characters, values of 512."),
]


class BatchError(_Output):
    """One problem of a batch: a line of its input file that failed validation, or the batch's."""

    code: str
    message: str
    param: str | None = None
    line: int | None = Field(default=None, description="The input file's line, from 1.")


class BatchErrors(_Output):
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(_Output):
    total: int = Field(ge=0)
    completed: int = Field(ge=0, description="Lines answered 2xx (in the output file).")
    failed: int = Field(ge=0, description="Lines in the error file.")


class InputTokensDetails(_Output):
    cached_tokens: int = 0


class OutputTokensDetails(_Output):
    reasoning_tokens: int = 0


class BatchUsage(_Output):
    """Tokens of the lines answered so far; an embedding generates none."""

    input_tokens: int = Field(ge=0)
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int = Field(ge=0)

    @classmethod
    def of(cls, input_tokens: int) -> BatchUsage:
        return cls(input_tokens=input_tokens, total_tokens=input_tokens)


class Batch(_Output):
    id: str = Field(description='"batch_" and 32 hex digits.')
    object: Literal["batch"] = "batch"
    endpoint: Literal["/v1/embeddings"]
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: Literal["24h"]
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    metadata: dict[str, str] | None = None
    usage: BatchUsage


class BatchList(_Output):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool


class CreateBatch(BaseModel):
    """The body of POST /v1/batches; unknown fields (`output_expires_after`) are ignored."""

    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(min_length=1, description="A file uploaded with purpose batch.")
    endpoint: Literal["/v1/embeddings"] = Field(description="The only endpoint batches call.")
    completion_window: Literal["24h"] = Field(
        description="Lines not done within it go to the error file as batch_expired."
    )
    metadata: Metadata | None = None


class LineResponse(_Output):
    status_code: int
    request_id: str
    body: dict[str, Any] = Field(description="What POST /v1/embeddings answers for the line.")


class LineError(_Output):
    code: str
    message: str


class OutputLine(_Output):
    """A line of the output or the error file: `response` for a line that was sent, `error` for
    one that never was (batch_expired, batch_cancelled)."""

    id: str = Field(description='"batch_req_" and 32 hex digits.')
    custom_id: str
    response: LineResponse | None
    error: LineError | None
