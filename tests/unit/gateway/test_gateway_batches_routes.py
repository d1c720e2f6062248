from __future__ import annotations

import time

import orjson
import pytest
from gateway_fakes import serve
from openai import BadRequestError, ConflictError, NotFoundError, OpenAI
from openai.types import Batch
from starlette.testclient import TestClient

from gateway.batches.objects import Batch as OurBatch
from gateway.batches.objects import BatchList

KEY, OTHER_KEY = "key-a", "key-b"
MODEL = "epithre-embed"


def sdk(client: TestClient, key: str = KEY) -> OpenAI:
    """The OpenAI SDK over the app's test client."""
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0)


def jsonl(*lines: dict) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def line(custom_id: str, *texts: str, **fields: object) -> dict:
    body = {"model": MODEL, "input": list(texts), **fields}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def create(openai: OpenAI, raw: bytes, **options: object) -> Batch:
    file = openai.files.create(file=("in.jsonl", raw), purpose="batch")
    options = {"endpoint": "/v1/embeddings", "completion_window": "24h"} | options
    return openai.batches.create(input_file_id=file.id, **options)


def ended(openai: OpenAI, batch_id: str, *, deadline_s: float = 10) -> Batch:
    until = time.monotonic() + deadline_s
    while (batch := openai.batches.retrieve(batch_id)).status not in (
        "completed",
        "failed",
        "expired",
        "cancelled",
    ):
        assert time.monotonic() < until, batch.status
        time.sleep(0.02)
    return batch


def test_the_sdk_runs_a_batch_from_upload_to_output_file() -> None:
    with serve(api_keys=(KEY,)) as (client, _):
        openai = sdk(client)
        created = create(
            openai, jsonl(line("a", "one"), line("b", "two", "three")), metadata={"x": "y"}
        )
        batch = ended(openai, created.id)
        output = openai.files.content(batch.output_file_id).content
    assert created.status == "validating" and created.metadata == {"x": "y"}
    assert batch.status == "completed" and batch.error_file_id is None
    assert batch.request_counts.model_dump() == {"total": 2, "completed": 2, "failed": 0}
    assert batch.usage.input_tokens == 3 + 3 + 3  # the fake counts words + 2
    lines = [orjson.loads(raw) for raw in output.splitlines()]
    assert [ln["custom_id"] for ln in lines] == ["a", "b"]
    assert [len(ln["response"]["body"]["data"]) for ln in lines] == [1, 2]


def test_a_batch_object_is_what_the_sdk_declares_field_for_field() -> None:
    with serve() as (client, _):
        created = client.post(
            "/v1/batches",
            json={
                "input_file_id": client.post(
                    "/v1/files",
                    files={"file": ("in.jsonl", jsonl(line("a", "x")))},
                    data={"purpose": "batch"},
                ).json()["id"],
                "endpoint": "/v1/embeddings",
                "completion_window": "24h",
            },
        ).json()
    assert set(created) == set(Batch.model_fields)
    assert OurBatch.model_validate(created).status == "validating"
    assert Batch.model_validate(created).usage.input_tokens_details.cached_tokens == 0


def test_another_key_gets_404_for_a_batch_and_its_file_and_lists_none() -> None:
    with serve(api_keys=(KEY, OTHER_KEY)) as (client, _):
        owner, other = sdk(client), sdk(client, OTHER_KEY)
        batch = create(owner, jsonl(line("a", "x")))
        for call in (
            lambda: other.batches.retrieve(batch.id),
            lambda: other.batches.cancel(batch.id),
            lambda: other.batches.create(
                input_file_id=batch.input_file_id,
                endpoint="/v1/embeddings",
                completion_window="24h",
            ),
        ):
            with pytest.raises(NotFoundError) as missing:
                call()
            assert missing.value.body["param"] in ("batch_id", "input_file_id")
        assert other.batches.list().data == []
        assert [b.id for b in owner.batches.list().data] == [batch.id]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"endpoint": "/v1/chat/completions"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ],
)
def test_a_create_request_openai_would_refuse_is_400_naming_the_field(options, param) -> None:
    with serve() as (client, _), pytest.raises(BadRequestError) as refused:
        create(sdk(client), jsonl(line("a", "x")), **options)
    assert refused.value.body["param"] == param


def test_an_output_file_is_not_a_batch_s_input() -> None:
    with serve() as (client, _):
        openai = sdk(client)
        batch = ended(openai, create(openai, jsonl(line("a", "x"))).id)
        with pytest.raises(BadRequestError) as refused:
            openai.batches.create(
                input_file_id=batch.output_file_id,
                endpoint="/v1/embeddings",
                completion_window="24h",
            )
    assert refused.value.body["param"] == "input_file_id"
    assert "purpose 'batch_output'" in refused.value.body["message"]


def test_pages_of_batches_follow_after_and_limit() -> None:
    with serve(batch_worker=False) as (client, _):
        openai = sdk(client)
        ids = [create(openai, jsonl(line("a", "x"))).id for _ in range(3)]
        first = client.get("/v1/batches", params={"limit": 2}).json()
        second = client.get("/v1/batches", params={"limit": 2, "after": first["last_id"]}).json()
        too_many = client.get("/v1/batches", params={"limit": 101})
    BatchList.model_validate(first)
    assert [b["id"] for b in first["data"]] == [ids[2], ids[1]] and first["has_more"]
    assert [b["id"] for b in second["data"]] == [ids[0]] and not second["has_more"]
    assert (too_many.status_code, too_many.json()["error"]["param"]) == (400, "limit")


def test_cancelling_an_ended_batch_is_409() -> None:
    with serve() as (client, _):
        openai = sdk(client)
        batch = ended(openai, create(openai, jsonl(line("a", "x"))).id)
        with pytest.raises(ConflictError) as refused:
            openai.batches.cancel(batch.id)
    assert refused.value.body["message"] == "Cannot cancel a batch with status 'completed'."


def test_a_replica_without_a_worker_accepts_batches_and_runs_none() -> None:
    with serve(batch_worker=False) as (client, _):
        openai = sdk(client)
        batch = create(openai, jsonl(line("a", "x")))
        time.sleep(0.3)
        assert openai.batches.retrieve(batch.id).status == "validating"
        cancelled = openai.batches.cancel(batch.id)
    assert cancelled.status == "cancelling"


def test_the_document_declares_the_batch_operations_their_body_and_parameters() -> None:
    with serve() as (client, _):
        document = client.get("/openapi.json").json()
    create_op = document["paths"]["/v1/batches"]["post"]
    assert create_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateBatch"
    }
    assert set(create_op["responses"]) == {"200", "400", "401", "404", "408", "413", "415"}
    listing = document["paths"]["/v1/batches"]["get"]
    assert [p["name"] for p in listing["parameters"]] == ["after", "limit"]
    cancel = document["paths"]["/v1/batches/{batch_id}/cancel"]["post"]
    assert cancel["parameters"][0] == {
        "name": "batch_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert "requestBody" not in cancel and "409" in cancel["responses"]
