from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from starlette.requests import Request

from gateway.body import BodyLimits
from gateway.errors import (
    BodyTooLarge,
    InvalidForm,
    InvalidRequest,
    RequestTimeout,
    UnsupportedUploadType,
)
from gateway.files.upload import UploadForm, read_upload

BOUNDARY = "7f3a9c"
LIMITS = BodyLimits(max_bytes=100_000, timeout_s=30.0, min_bytes_per_s=1_000.0)
JSONL = b'{"custom_id":"a"}\n{"custom_id":"b"}\n'


def part(name: str, value: bytes, *, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename is not None:
        head += "Content-Type: application/octet-stream\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def upload_body(file: bytes = JSONL, *, filename: str = "in.jsonl", **fields: str) -> bytes:
    values = {"purpose": "batch", **fields}
    return form(
        *(part(name, value.encode()) for name, value in values.items()),
        part("file", file, filename=filename),
    )


def receiving(body: bytes, *, size: int = 7, pulled: list[int] | None = None) -> Callable:
    """An ASGI receive that sends `body` in `size`-byte chunks (so that boundaries and headers
    fall across chunks), counting what was pulled."""
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]

    async def receive() -> dict:
        if pulled is not None:
            pulled.append(len(chunks[0]))
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return receive


def request(receive: Callable, *, content_type: str | None = None, length: int | None = None):
    headers = [
        (b"content-type", (content_type or f"multipart/form-data; boundary={BOUNDARY}").encode())
    ]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return Request(
        {"type": "http", "method": "POST", "path": "/v1/files", "headers": headers}, receive
    )


def read(body: bytes, limits: BodyLimits = LIMITS, **options) -> tuple[UploadForm, bytes]:
    async def run() -> tuple[UploadForm, bytes]:
        form = await read_upload(request(receiving(body), **options), limits)
        return form, b"".join([chunk async for chunk in form.chunks])

    return asyncio.run(run())


def test_the_fields_come_first_and_the_file_streams_whole():
    form, file = read(upload_body())
    assert (form.fields.purpose, form.filename, form.fields.expires_after_seconds) == (
        "batch",
        "in.jsonl",
        None,
    )
    assert file == JSONL


def test_a_file_holding_the_boundary_s_look_alikes_reads_back_unchanged():
    tricky = b"--" + BOUNDARY.encode()[:-1] + b"\r\n--\r\n" + bytes(range(256)) * 3
    assert read(upload_body(tricky))[1] == tricky


def test_expires_after_as_the_sdk_sends_it():
    form, _ = read(
        upload_body(**{"expires_after[anchor]": "created_at", "expires_after[seconds]": "7200"})
    )
    assert form.fields.expires_after_seconds == 7200


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"purpose": "fine-tune"}, "purpose"),
        (
            {"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
            "expires_after[seconds]",
        ),
        (
            {"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"},
            "expires_after[anchor]",
        ),
        ({"expires_after[anchor]": "created_at"}, "expires_after[seconds]"),
        ({"expires_after[seconds]": "3600"}, "expires_after[anchor]"),
    ],
)
def test_a_bad_field_is_400_naming_it(fields, param):
    with pytest.raises(InvalidRequest) as refused:
        read(upload_body(**fields))
    assert (refused.value.status, refused.value.param) == (400, param)


def test_a_purpose_sent_after_the_file_is_refused_saying_where_it_belongs():
    body = form(part("file", JSONL, filename="in.jsonl"), part("purpose", b"batch"))
    with pytest.raises(InvalidRequest) as refused:
        read(body)
    assert refused.value.param == "purpose"
    assert "must come before its file" in refused.value.message


def test_another_field_after_the_file_fails_the_upload_before_its_stream_ends():
    body = form(part("purpose", b"batch"), part("file", JSONL, filename="a.jsonl"), part("x", b"1"))
    with pytest.raises(InvalidForm) as refused:
        read(body)
    assert refused.value.param == "x"


@pytest.mark.parametrize("filename", ["in.csv", "", "jsonl"])
def test_a_file_that_is_not_jsonl_is_refused(filename):
    with pytest.raises(InvalidRequest) as refused:
        read(upload_body(filename=filename))
    assert refused.value.param == "file"


def test_a_form_without_a_file_is_refused_naming_it():
    with pytest.raises(InvalidRequest) as refused:
        read(form(part("purpose", b"batch")))
    assert refused.value.param == "file"


def test_a_cut_upload_never_ends_its_stream():
    cut = upload_body()[:-30]  # the closing boundary and some of the file are missing
    with pytest.raises(InvalidForm, match="closing boundary"):
        read(cut)


def test_a_body_that_is_not_multipart_is_refused():
    with pytest.raises(InvalidForm):
        read(b"this is not a form at all\r\n" * 10)


def test_another_media_type_is_415():
    with pytest.raises(UnsupportedUploadType) as refused:
        read(JSONL, content_type="application/json")
    assert refused.value.status == 415


def test_a_multipart_type_without_boundary_is_400():
    with pytest.raises(InvalidForm, match="boundary"):
        read(upload_body(), content_type="multipart/form-data")


def test_a_field_over_its_cap_is_refused():
    with pytest.raises(InvalidForm) as refused:
        read(upload_body(purpose="b" * 2000))
    assert refused.value.param == "purpose"


def test_a_declared_length_over_the_cap_is_413_before_any_byte_is_read():
    pulled: list[int] = []

    async def run() -> None:
        body = upload_body()
        await read_upload(request(receiving(body, pulled=pulled), length=200_000), LIMITS)

    with pytest.raises(BodyTooLarge):
        asyncio.run(run())
    assert pulled == []


def test_a_body_over_the_cap_is_413_once_the_count_passes_it():
    pulled: list[int] = []
    body = upload_body(b"x" * 300_000)

    async def run() -> None:
        form = await read_upload(request(receiving(body, size=1000, pulled=pulled)), LIMITS)
        async for _ in form.chunks:
            pass

    with pytest.raises(BodyTooLarge):
        asyncio.run(run())
    assert 100_000 < sum(pulled) <= 101_000


def test_an_upload_under_the_floor_rate_is_408():
    limits = BodyLimits(max_bytes=100_000, timeout_s=30.0, min_bytes_per_s=10_000.0, grace_s=0.2)
    body = upload_body(b"y" * 5_000)
    chunks = [body[i : i + 100] for i in range(0, len(body), 100)]

    async def trickle() -> dict:
        await asyncio.sleep(0.05)  # 2 kB/s, a fifth of the floor
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def run() -> None:
        form = await read_upload(request(trickle), limits)
        async for _ in form.chunks:
            pass

    with pytest.raises(RequestTimeout):
        asyncio.run(run())
    assert chunks  # refused long before the end
