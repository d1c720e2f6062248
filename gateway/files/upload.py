"""POST /v1/files' multipart/form-data body, parsed as it streams (python-multipart's parser):
its fields first, then the file's bytes handed on chunk by chunk, never the whole file held.

The route has its own cap and pace (`upload_limits`) instead of the 25 MB JSON cap. The fields
must come before the file, as the OpenAI SDK, httpx, requests and OpenAI's own curl examples send
them: the file is stored as it arrives, so what it is for must be known first.

Usage:
    form = await read_upload(request, upload_limits(settings))
    file = await files.create(owner, purpose=form.fields.purpose, filename=form.filename,
                              chunks=form.chunks, expires_after_s=form.fields.expires_after_seconds)
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from gateway.body import BodyLimits, stream_capped
from gateway.errors import InvalidForm, InvalidRequest, UnsupportedUploadType
from gateway.files.objects import UploadFields
from gateway.params import parse_params
from gateway.settings import Settings

FILE_FIELD = "file"
FIELD_BYTES = 1024
MAX_FIELDS = 16
# Room for the form around the file: at most MAX_FIELDS small fields before it, each with
# python-multipart's cap of 8 headers of 4 KiB. Above that bound and above the size of one
# chunk of the body (uvicorn hands on up to a few hundred KiB at once), so that a file over its
# cap meets the file's 413, which names the file, and not the body's.
FORM_ALLOWANCE = 1024 * 1024


@dataclass(frozen=True)
class UploadForm:
    fields: UploadFields
    filename: str
    # The file's bytes as they arrive; raises the body's errors (413, 408, a broken form) there.
    chunks: AsyncIterator[bytes]


def upload_limits(settings: Settings) -> BodyLimits:
    """The cap and pace of an upload: the file cap plus the form around it, at the upload floor
    rate; the pace alone bounds its duration, so the deadline is what the floor allows."""
    max_bytes = settings.max_file_bytes + FORM_ALLOWANCE
    floor = settings.min_upload_bytes_per_s
    return BodyLimits(max_bytes=max_bytes, timeout_s=max_bytes / floor + 5.0, min_bytes_per_s=floor)


async def read_upload(request: Request, limits: BodyLimits) -> UploadForm:
    """Read the fields up to the file part; 415 for another media type, 400 for a broken form,
    a missing or bad field (`param` names it) or a file that is not .jsonl."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type != b"multipart/form-data":
        raise UnsupportedUploadType(
            f"Content-Type must be multipart/form-data, got {media_type.decode('latin-1')!r}"
        )
    if not options.get(b"boundary"):
        raise InvalidForm("Content-Type names no multipart boundary")
    parts = _Parts(stream_capped(request, limits), options[b"boundary"])
    values: dict[str, str] = {}
    while (headers := await parts.next_headers()) is not None:
        name, filename = _disposition(headers)
        if name == FILE_FIELD:
            return UploadForm(
                fields=_fields(values), filename=_jsonl(filename), chunks=parts.file()
            )
        if len(values) == MAX_FIELDS:
            raise InvalidForm(f"the form has more than {MAX_FIELDS} fields before its file")
        values[name] = await parts.field(name)
    raise InvalidRequest("the form has no file part", param=FILE_FIELD)


class _Parts:
    """python-multipart's callbacks turned into events read in order, as the body streams."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._events: deque[tuple[str, bytes, bytes]] = deque()
        # A header's name and value may each arrive in pieces, split across chunks.
        name, value = bytearray(), bytearray()

        def event(kind: str) -> Callable[[], None]:
            return lambda: self._events.append((kind, b"", b""))

        def header_end() -> None:
            self._events.append(("header", bytes(name), bytes(value)))
            name.clear()
            value.clear()

        def part_data(chunk: bytes, start: int, end: int) -> None:
            self._events.append(("data", chunk[start:end], b""))

        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_header_field": lambda chunk, start, end: name.extend(chunk[start:end]),
                "on_header_value": lambda chunk, start, end: value.extend(chunk[start:end]),
                "on_header_end": header_end,
                "on_headers_finished": event("headers"),
                "on_part_data": part_data,
                "on_part_end": event("part_end"),
                "on_end": event("end"),
            },
        )

    async def _next(self) -> tuple[str, bytes, bytes]:
        while not self._events:
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                raise InvalidForm("the form ends before its closing boundary") from None
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidForm(f"the form is not valid multipart/form-data: {exc}") from None
        return self._events.popleft()

    async def next_headers(self) -> dict[str, str] | None:
        """The next part's headers (lower-cased names), or None at the form's end."""
        headers: dict[str, str] = {}
        while True:
            kind, name, value = await self._next()
            if kind == "end":
                return None
            if kind == "header":
                # Latin-1 keeps the bytes as sent: httpx and browsers put UTF-8 file names there.
                headers[name.decode("latin-1").lower()] = value.decode("latin-1")
            elif kind == "headers":
                return headers

    async def field(self, name: str) -> str:
        value = bytearray()
        while (event := await self._next())[0] == "data":
            value += event[1]
            if len(value) > FIELD_BYTES:
                raise InvalidForm(f"form field {name!r} is over {FIELD_BYTES} bytes", param=name)
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise InvalidForm(f"form field {name!r} is not UTF-8", param=name) from None

    async def file(self) -> AsyncIterator[bytes]:
        """The file part's bytes, then the rest of the form, which must hold no other part: the
        stream ends only once the form is known whole, so a cut upload is never stored."""
        while (event := await self._next())[0] == "data":
            if event[1]:
                yield event[1]
        if (headers := await self.next_headers()) is not None:
            name, _ = _disposition(headers)
            raise InvalidForm(
                f"form field {name!r} comes after the file; send it before", param=name
            )


def _disposition(headers: dict[str, str]) -> tuple[str, str | None]:
    kind, options = parse_options_header(headers.get("content-disposition", ""))
    if kind != b"form-data" or b"name" not in options:
        raise InvalidForm("a part of the form has no Content-Disposition: form-data name")
    filename = options.get(b"filename")
    decoded = None if filename is None else filename.decode("utf-8", errors="replace")
    return options[b"name"].decode("utf-8", errors="replace"), decoded


def _fields(values: dict[str, str]) -> UploadFields:
    try:
        return parse_params(UploadFields, values)
    except InvalidRequest as error:
        # A field sent after the file looks missing here: say where it belongs.
        raise InvalidRequest(
            f"{error.message} (the form's fields must come before its file)", param=error.param
        ) from None


def _jsonl(filename: str | None) -> str:
    # As OpenAI: the Batch API takes .jsonl files; the name is kept, never used as a path.
    if not filename or not filename.lower().endswith(".jsonl"):
        raise InvalidRequest(f"the file must be a .jsonl file, got {filename!r}", param=FILE_FIELD)
    return filename
