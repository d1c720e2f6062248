"""The Files API over HTTP, driven as clients drive it: httpx forms and the OpenAI SDK."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from gateway_fakes import MULTIMODAL, error_body, serve
from openai import NotFoundError, OpenAI

from gateway.openapi import build_document
from gateway.protocol import Limits
from gateway.settings import Settings

KEYS = ("key-alice", "key-bob")
JSONL = b'{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{"input":"x"}}\n'


def auth(key: str = KEYS[0]) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def upload(client, body: bytes = JSONL, *, key: str = KEYS[0], **fields: str):
    return client.post(
        "/v1/files",
        data={"purpose": "batch", **fields},
        files={"file": ("requests.jsonl", body, "application/jsonl")},
        headers=auth(key),
    )


def not_found(file_id: str, param: str = "id") -> dict:
    return error_body(
        f"No such File object: {file_id}", type="invalid_request_error", param=param, code=None
    )


def test_the_openai_sdk_uploads_lists_reads_and_deletes_a_file():
    with serve(api_keys=KEYS) as (client, _):
        sdk = OpenAI(
            base_url="http://testserver/v1", api_key=KEYS[0], http_client=client, max_retries=0
        )
        created = sdk.files.create(
            file=("requests.jsonl", JSONL),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600},
        )
        retrieved = sdk.files.retrieve(created.id)
        listed = sdk.files.list(purpose="batch")
        content = sdk.files.content(created.id).read()
        deleted = sdk.files.delete(created.id)
        with pytest.raises(NotFoundError):
            sdk.files.retrieve(created.id)
    assert (created.filename, created.bytes, created.purpose, created.status) == (
        "requests.jsonl",
        len(JSONL),
        "batch",
        "processed",
    )
    assert created.expires_at == created.created_at + 3600
    assert retrieved == created
    assert [f.id for f in listed.data] == [created.id]
    assert content == JSONL
    assert (deleted.id, deleted.deleted) == (created.id, True)


def test_a_batch_file_expires_after_30_days_by_default():
    with serve(api_keys=KEYS) as (client, _):
        body = upload(client).json()
    assert body["expires_at"] - body["created_at"] == 30 * 24 * 3600


def test_content_streams_the_bytes_as_uploaded():
    data = b"".join(b'{"custom_id":"%d"}\n' % i for i in range(50_000))
    with serve(api_keys=KEYS) as (client, _):
        file_id = upload(client, data).json()["id"]
        response = client.get(f"/v1/files/{file_id}/content", headers=auth())
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == data


def test_another_key_gets_404_on_every_route_and_an_empty_list():
    with serve(api_keys=KEYS) as (client, _):
        file_id = upload(client).json()["id"]
        other = auth(KEYS[1])
        answers = [
            client.get(f"/v1/files/{file_id}", headers=other),
            client.get(f"/v1/files/{file_id}/content", headers=other),
            client.delete(f"/v1/files/{file_id}", headers=other),
        ]
        listed = client.get("/v1/files", headers=other).json()
        after = client.get("/v1/files", params={"after": file_id}, headers=other)
        still = client.get(f"/v1/files/{file_id}", headers=auth())
    assert [(a.status_code, a.json()) for a in answers] == [(404, not_found(file_id))] * 3
    assert (after.status_code, after.json()) == (404, not_found(file_id, "after"))
    assert listed == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    assert still.status_code == 200


def test_without_keys_every_caller_is_the_one_anonymous_owner():
    with serve() as (client, _):
        file_id = upload(client).json()["id"]
        assert client.get(f"/v1/files/{file_id}").json()["id"] == file_id


def test_every_route_needs_a_key_when_keys_are_set():
    with serve(api_keys=KEYS) as (client, _):
        answers = [
            client.post("/v1/files", files={"file": ("a.jsonl", JSONL)}, data={"purpose": "batch"}),
            client.get("/v1/files"),
            client.get("/v1/files/file-1"),
            client.get("/v1/files/file-1/content"),
            client.delete("/v1/files/file-1"),
        ]
    assert [a.status_code for a in answers] == [401] * 5


def test_pages_of_the_list_follow_after_and_limit():
    with serve(api_keys=KEYS) as (client, _):
        ids = [upload(client).json()["id"] for _ in range(3)]
        first = client.get("/v1/files", params={"limit": 2}, headers=auth()).json()
        rest = client.get(
            "/v1/files", params={"limit": 2, "after": first["last_id"]}, headers=auth()
        ).json()
        oldest = client.get("/v1/files", params={"order": "asc", "limit": 1}, headers=auth())
    # Created within one second: creation order breaks the tie.
    assert [f["id"] for f in first["data"]] == ids[:0:-1] and first["has_more"]
    assert [f["id"] for f in rest["data"]] == ids[:1] and not rest["has_more"]
    assert oldest.json()["data"][0]["id"] == ids[0]


@pytest.mark.parametrize(
    ("query", "param"),
    [({"limit": 0}, "limit"), ({"limit": "ten"}, "limit"), ({"order": "up"}, "order")],
)
def test_a_bad_list_query_is_400_naming_the_parameter(query, param):
    with serve(api_keys=KEYS) as (client, _):
        response = client.get("/v1/files", params=query, headers=auth())
    assert (response.status_code, response.json()["error"]["param"]) == (400, param)


def test_an_upload_for_another_purpose_is_400_naming_purpose():
    with serve(api_keys=KEYS) as (client, _):
        response = upload(client, purpose="assistants")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "purpose"


def test_a_file_over_the_cap_is_413_and_the_connection_closed():
    with serve(api_keys=KEYS, max_file_bytes=1000) as (client, _):
        response = upload(client, b"x" * 1001)
        listed = client.get("/v1/files", headers=auth()).json()
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert response.json() == error_body(
        "the file exceeds the limit of 1000 bytes",
        type="invalid_request_error",
        param="file",
        code="file_too_large",
    )
    assert listed["data"] == []


def test_the_key_s_quota_is_413_storage_quota_exceeded():
    with serve(api_keys=KEYS, file_quota_bytes=2 * len(JSONL)) as (client, _):
        assert upload(client).status_code == upload(client).status_code == 200
        refused = upload(client)
        other_key = upload(client, key=KEYS[1])
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "storage_quota_exceeded"
    assert other_key.status_code == 200


def test_a_streamed_upload_past_the_cap_is_refused_before_the_rest_is_read():
    # Raw ASGI: TestClient joins a streamed body before the app sees it.
    pulled: list[int] = []
    head = (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    )
    chunks = [head] + [b"z" * 10_000] * 100

    async def receive() -> dict:
        pulled.append(len(chunks[len(pulled)]))
        return {"type": "http.request", "body": chunks[len(pulled) - 1], "more_body": True}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"multipart/form-data; boundary=b")]
    scope = {"type": "http", "method": "POST", "path": "/v1/files", "headers": headers}
    with serve(max_file_bytes=50_000) as (client, _):
        asyncio.run(client.app(scope, receive, send))
        listed = client.get("/v1/files").json()
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert sum(pulled) - len(head) == 60_000  # the chunk that passed 50,000 bytes, no further
    assert listed["data"] == []


def test_the_gateway_sweeps_files_that_expired_while_it_was_down(tmp_path):
    with serve(api_keys=KEYS, data_dir=str(tmp_path)) as (client, _):
        file_id = upload(client).json()["id"]
    with sqlite3.connect(tmp_path / "epithre.sqlite3") as database:
        database.execute("UPDATE files SET expires_at = 1")
    payload = tmp_path / "files" / file_id
    assert payload.exists()
    with serve(api_keys=KEYS, data_dir=str(tmp_path)) as (client, _):
        deadline = time.monotonic() + 5
        while payload.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        answer = client.get(f"/v1/files/{file_id}", headers=auth())
    assert not payload.exists()
    assert answer.status_code == 404


def test_the_document_describes_the_form_the_path_parameter_and_the_bytes():
    paths = build_document(Limits.of(Settings(), MULTIMODAL))["paths"]
    upload = paths["/v1/files"]["post"]["requestBody"]["content"]
    content = paths["/v1/files/{file_id}/content"]["get"]
    assert list(upload) == ["multipart/form-data"]
    assert set(paths["/v1/files/{file_id}"]) == {"get", "delete"}
    assert content["parameters"] == [
        {"name": "file_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert content["responses"]["200"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    assert [p["name"] for p in paths["/v1/files"]["get"]["parameters"]] == [
        "after",
        "limit",
        "order",
        "purpose",
    ]
