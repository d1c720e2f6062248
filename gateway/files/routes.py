"""The Files API's HTTP endpoints: thin shells (authenticate, parse, call the store, render).

Every route is by owner: another key's file answers 404 as if it did not exist.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.endpoint import Endpoint, json_response
from gateway.errors import (
    APIError,
    BodyTooLarge,
    FileTooLarge,
    InvalidForm,
    InvalidRequest,
    QuotaExceeded,
    RequestTimeout,
    ResourceNotFound,
    Unauthorized,
    UnsupportedUploadType,
    error_response,
)
from gateway.files.objects import FileDeleted, FileList, FileListQuery, FileObject, FileUpload
from gateway.files.upload import read_upload
from gateway.params import parse_params

CONTENT_TYPE = "application/octet-stream"


async def create_file(request: Request) -> Response:
    state = request.app.state
    owner = state.api_keys.check(request.headers)
    try:
        form = await read_upload(request, state.upload_limits)
        file = await state.files.create(
            owner,
            purpose=form.fields.purpose,
            filename=form.filename,
            chunks=form.chunks,
            expires_after_s=form.fields.expires_after_seconds,
        )
    except APIError as error:
        # Refused mid-upload, the rest of the body is never read: closing the connection is the
        # only way to stop the client sending it (uvicorn closes on this header).
        response = error_response(error, request)
        response.headers["Connection"] = "close"
        return response
    return json_response(file)


async def list_files(request: Request) -> Response:
    state = request.app.state
    owner = state.api_keys.check(request.headers)
    query = parse_params(FileListQuery, request.query_params)
    page = await state.files.list(
        owner, purpose=query.purpose, after=query.after, limit=query.limit, order=query.order
    )
    return json_response(page)


async def retrieve_file(request: Request) -> Response:
    state = request.app.state
    owner = state.api_keys.check(request.headers)
    return json_response(await state.files.get(owner, request.path_params["file_id"]))


async def file_content(request: Request) -> Response:
    state = request.app.state
    owner = state.api_keys.check(request.headers)
    chunks = await state.files.content(owner, request.path_params["file_id"])
    return StreamingResponse(chunks, media_type=CONTENT_TYPE)


async def delete_file(request: Request) -> Response:
    state = request.app.state
    owner = state.api_keys.check(request.headers)
    return json_response(await state.files.delete(owner, request.path_params["file_id"]))


FILE_ENDPOINTS = (
    Endpoint(
        "/v1/files",
        "POST",
        create_file,
        operation_id="createFile",
        summary="Upload a batch input file",
        answer="The stored file.",
        response=FileObject,
        request=FileUpload,
        request_media_type="multipart/form-data",
        errors=(
            InvalidRequest,
            InvalidForm,
            Unauthorized,
            RequestTimeout,
            BodyTooLarge,
            FileTooLarge,
            QuotaExceeded,
            UnsupportedUploadType,
        ),
    ),
    Endpoint(
        "/v1/files",
        "GET",
        list_files,
        operation_id="listFiles",
        summary="The API key's files",
        answer="A page of the key's files by `created_at`.",
        response=FileList,
        query=FileListQuery,
        errors=(InvalidRequest, Unauthorized, ResourceNotFound),
    ),
    Endpoint(
        "/v1/files/{file_id}",
        "GET",
        retrieve_file,
        operation_id="retrieveFile",
        summary="A file",
        answer="The file.",
        response=FileObject,
        errors=(Unauthorized, ResourceNotFound),
    ),
    Endpoint(
        "/v1/files/{file_id}/content",
        "GET",
        file_content,
        operation_id="downloadFile",
        summary="A file's content",
        answer="The file's bytes as uploaded or written.",
        response_media_type=CONTENT_TYPE,
        errors=(Unauthorized, ResourceNotFound),
    ),
    Endpoint(
        "/v1/files/{file_id}",
        "DELETE",
        delete_file,
        operation_id="deleteFile",
        summary="Delete a file",
        answer="The file is deleted.",
        response=FileDeleted,
        errors=(Unauthorized, ResourceNotFound),
    ),
)
