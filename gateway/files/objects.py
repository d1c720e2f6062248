"""The Files API's objects, as OpenAI declares them (fields in the order of its reference)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.errors import InvalidRequest
from gateway.protocol import _Output

# OpenAI's bounds of `expires_after.seconds`: an hour and thirty days.
MIN_EXPIRES_AFTER_S = 3600
MAX_EXPIRES_AFTER_S = 30 * 24 * 3600
LIST_LIMIT = 10_000

# Uploads are batch input files; the batch worker writes its output and error files.
FilePurpose = Literal["batch", "batch_output"]


class FileObject(_Output):
    id: str = Field(description="`file-` and 24 hexadecimal digits.")
    object: Literal["file"]
    bytes: int = Field(ge=0)
    created_at: int = Field(description="Unix seconds.")
    expires_at: int | None = Field(description="Unix seconds; null: kept until deleted.")
    filename: str
    purpose: FilePurpose
    # Deprecated by OpenAI and still sent; the SDK requires it. A stored file is always whole.
    status: Literal["processed"]


class FileList(_Output):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(_Output):
    id: str
    object: Literal["file"]
    deleted: bool


class FileListQuery(BaseModel):
    """The query of GET /v1/files: parsed with this model and documented from it."""

    model_config = ConfigDict(extra="ignore")

    after: str | None = Field(None, description="A file id: the page starts after it.")
    limit: int = Field(LIST_LIMIT, ge=1, le=LIST_LIMIT, description="Files per page.")
    order: Literal["asc", "desc"] = Field("desc", description="By `created_at`.")
    purpose: str | None = Field(None, description="Only files of this purpose.")


class UploadFields(BaseModel):
    """The fields of POST /v1/files besides the file, as the OpenAI SDK sends them (before it);
    gateway/files/upload.py checks them with this model."""

    model_config = ConfigDict(extra="ignore")

    purpose: Literal["batch"] = Field(description="Uploads are batch input files.")
    expires_after_anchor: Literal["created_at"] | None = Field(None, alias="expires_after[anchor]")
    expires_after_seconds: int | None = Field(
        None,
        alias="expires_after[seconds]",
        ge=MIN_EXPIRES_AFTER_S,
        le=MAX_EXPIRES_AFTER_S,
        description="Seconds after `created_at`; batch files expire after 30 days by default.",
    )

    @model_validator(mode="after")
    def _whole_expires_after(self) -> UploadFields:
        # OpenAI requires both halves of expires_after, or neither.
        if (self.expires_after_anchor is None) != (self.expires_after_seconds is None):
            missing = "anchor" if self.expires_after_anchor is None else "seconds"
            param = f"expires_after[{missing}]"
            raise InvalidRequest(f"{param} is required with expires_after", param=param)
        return self


class FileUpload(UploadFields):
    """POST /v1/files' multipart/form-data body: the fields, then the file."""

    file: bytes = Field(
        description="A .jsonl file, one batch request a line; the other fields come before it."
    )
