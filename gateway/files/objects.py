"""The Files API's objects, as OpenAI declares them (fields in the order of its reference)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.protocol import _Output

# OpenAI's bounds of `expires_after.seconds`: an hour and thirty days.
MIN_EXPIRES_AFTER_S = 3600
MAX_EXPIRES_AFTER_S = 30 * 24 * 3600
LIST_LIMIT = 10_000

# Uploads are batch input files; the batch worker writes its output and error files.
FilePurpose = Literal["batch", "batch_output"]
UPLOAD_PURPOSES: tuple[str, ...] = ("batch",)


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


class FileUpload(BaseModel):
    """The multipart/form-data fields of POST /v1/files, as the OpenAI SDK sends them (for the
    OpenAPI document; gateway/files/upload.py parses the stream)."""

    model_config = ConfigDict(populate_by_name=True)

    purpose: Literal["batch"]
    file: bytes = Field(
        description="A .jsonl file, one batch request a line; the fields must come before it."
    )
    expires_after_anchor: Literal["created_at"] | None = Field(None, alias="expires_after[anchor]")
    expires_after_seconds: int | None = Field(
        None,
        alias="expires_after[seconds]",
        ge=MIN_EXPIRES_AFTER_S,
        le=MAX_EXPIRES_AFTER_S,
        description="Seconds after `created_at`; batch files expire after 30 days by default.",
    )
