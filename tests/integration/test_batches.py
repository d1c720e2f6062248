"""The Batch API through the official OpenAI SDK against `python -m runner` (as `make serve`
runs it): answers equal to the realtime endpoint's, validation failures, cancel, ownership, and
a kill -9 in the middle of a batch that the restarted stack finishes, then a batch that expires.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from openai import NotFoundError, OpenAI
from openai.types import Batch

from runner.processes import process_tree, wait_gone
from runner.stack import runner_process
from tests.integration.conftest import cosine, short_texts
from tests.integration.images import encode, image_item, scene

pytestmark = pytest.mark.integration

KEY, OTHER_KEY = "batch-key-a", "batch-key-b"
MODEL = "epithre-embed"
# Small chunks and a short lease: several checkpoints a batch, a dead worker's chunks soon
# taken again.
SETTINGS = {
    "EPITHRE_API_KEYS": f"{KEY},{OTHER_KEY}",
    "EPITHRE_BATCH_CHUNK_LINES": "10",
    "EPITHRE_BATCH_LEASE_S": "3",
}
ENDED = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("batch-data")
    workdir = tmp_path_factory.mktemp("batch-runner")
    with runner_process(workdir, EPITHRE_DATA_DIR=str(data), **SETTINGS) as (_, url):
        yield url


def sdk(base_url: str, key: str = KEY) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def line(custom_id: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def texts_lines(count: int, *, per_line: int = 1, prefix: str = "line") -> list[dict]:
    words = short_texts(count * per_line)
    return [
        line(f"{prefix}-{i}", {"model": MODEL, "input": words[i * per_line : (i + 1) * per_line]})
        for i in range(count)
    ]


def submit(client: OpenAI, lines: list[dict] | bytes) -> Batch:
    raw = lines if isinstance(lines, bytes) else b"".join(orjson.dumps(ln) + b"\n" for ln in lines)
    file = client.files.create(file=("input.jsonl", raw), purpose="batch")
    return client.batches.create(
        input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h"
    )


def wait(client: OpenAI, batch_id: str, *, until=ENDED, deadline_s: float = 60) -> Batch:
    """The batch once its status is in `until` (or, with a callable, once it holds)."""
    give_up = time.monotonic() + deadline_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if (until(batch) if callable(until) else batch.status in until) or (
            time.monotonic() > give_up
        ):
            return batch
        time.sleep(0.1)


def done(batch: Batch) -> int:
    return batch.request_counts.completed + batch.request_counts.failed


def file_lines(client: OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [orjson.loads(raw) for raw in client.files.content(file_id).content.splitlines()]


def vector(embedding: list[float] | str) -> np.ndarray:
    """A float or base64 (little-endian float32) embedding as numbers."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding)


def once_each(*files: list[dict]) -> dict[str, dict]:
    """Every line by custom_id, asserting that none is written twice across the files."""
    lines = [ln for lines in files for ln in lines]
    by_id = {ln["custom_id"]: ln for ln in lines}
    assert len(by_id) == len(lines), "a custom_id written twice"
    return by_id


def completed_once_each(client: OpenAI, batch_id: str, lines: list[dict]) -> dict[str, dict]:
    """The batch's lines by custom_id once it ended, asserting that it completed with every one
    of `lines` answered once, all in the output file."""
    batch = wait(client, batch_id)
    assert batch.status == "completed"
    outputs = file_lines(client, batch.output_file_id)
    answered = once_each(outputs, file_lines(client, batch.error_file_id))
    assert set(answered) == {ln["custom_id"] for ln in lines}
    assert len(outputs) == batch.request_counts.completed == len(lines)
    return answered


def test_sdk_batch_answers_every_line_as_the_realtime_endpoint(base_url: str) -> None:
    client = sdk(base_url)
    lines = texts_lines(60) + texts_lines(40, per_line=3, prefix="three")
    lines += [
        line("dims", {"model": MODEL, "input": ["kucing oren"], "dimensions": 128}),
        line("b64", {"model": MODEL, "input": "hujan sore", "encoding_format": "base64"}),
        line("image", {"model": MODEL, "input": [image_item(encode(scene((200, 30, 30))))]}),
        line("too-many", {"model": MODEL, "input": short_texts(65)}),
        line("bad-dims", {"model": MODEL, "input": "x", "dimensions": 0}),
        line("broken-image", {"model": MODEL, "input": [image_item(b"not an image")]}),
    ]
    realtime = {
        ln["custom_id"]: httpx.post(
            f"{base_url}/v1/embeddings",
            json=ln["body"],
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
        for ln in lines
    }
    batch = wait(client, submit(client, lines).id)
    assert batch.status == "completed", batch.errors
    outputs = file_lines(client, batch.output_file_id)
    errors = file_lines(client, batch.error_file_id)
    answered = once_each(outputs, errors)
    assert set(answered) == set(realtime)
    refused = {"too-many", "bad-dims", "broken-image"}
    assert {ln["custom_id"] for ln in errors} == refused
    for custom_id in refused:
        response = answered[custom_id]["response"]
        expected = realtime[custom_id]
        assert response["status_code"] == expected.status_code == 400
        assert response["body"] == expected.json()
    tokens = 0
    for output in outputs:
        assert output["response"]["status_code"] == 200 and output["error"] is None
        body, expected = output["response"]["body"], realtime[output["custom_id"]].json()
        assert len(body["data"]) == len(expected["data"])
        for got, want in zip(body["data"], expected["data"], strict=True):
            assert cosine(vector(got["embedding"]), vector(want["embedding"])) >= 0.99999
        tokens += expected["usage"]["prompt_tokens"]
    assert batch.request_counts.total == len(lines)
    assert batch.request_counts.completed == len(lines) - len(refused)
    assert batch.request_counts.failed == len(refused)
    assert batch.usage.input_tokens == batch.usage.total_tokens == tokens
    assert batch.usage.output_tokens == 0


@pytest.mark.parametrize(
    ("raw", "code", "line_number"),
    [
        (
            b"".join(orjson.dumps(ln) + b"\n" for ln in texts_lines(2)) + b"{oops\n",
            "invalid_json_line",
            3,
        ),
        (
            b"".join(orjson.dumps(ln) + b"\n" for ln in [*texts_lines(3), texts_lines(1)[0]]),
            "duplicate_custom_id",
            4,
        ),
        (
            b"".join(
                orjson.dumps(line(f"n-{i}", {"model": MODEL, "input": "x"})) + b"\n"
                for i in range(50_001)
            ),
            "too_many_requests",
            50_001,
        ),
    ],
    ids=["not-json", "duplicate", "50001-lines"],
)
def test_a_bad_input_file_fails_validation_naming_the_line(
    base_url: str, raw: bytes, code: str, line_number: int
) -> None:
    client = sdk(base_url)
    batch = wait(client, submit(client, raw).id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [(code, line_number)]
    assert batch.output_file_id is None and batch.error_file_id is None


def test_cancel_mid_run_keeps_the_lines_done_and_cancels_the_rest(base_url: str) -> None:
    client = sdk(base_url)
    lines = texts_lines(300, prefix="cancel")
    batch_id = submit(client, lines).id
    wait(client, batch_id, until=lambda b: done(b) >= 20)
    assert client.batches.cancel(batch_id).status in ("cancelling", "cancelled")
    batch = wait(client, batch_id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    outputs = file_lines(client, batch.output_file_id)
    errors = file_lines(client, batch.error_file_id)
    answered = once_each(outputs, errors)
    assert set(answered) == {ln["custom_id"] for ln in lines}
    assert 20 <= len(outputs) < len(lines)
    assert all(ln["error"]["code"] == "batch_cancelled" for ln in errors)
    assert batch.request_counts.completed == len(outputs)
    assert batch.request_counts.failed == len(errors)


def test_another_key_finds_none_of_the_first_key_s_files_and_batches(base_url: str) -> None:
    owner, other = sdk(base_url), sdk(base_url, OTHER_KEY)
    batch = submit(owner, texts_lines(2, prefix="mine"))
    calls = [
        lambda: other.files.retrieve(batch.input_file_id),
        lambda: other.files.content(batch.input_file_id),
        lambda: other.batches.retrieve(batch.id),
        lambda: other.batches.cancel(batch.id),
        lambda: other.batches.create(
            input_file_id=batch.input_file_id, endpoint="/v1/embeddings", completion_window="24h"
        ),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            call()
    assert batch.id not in [b.id for b in other.batches.list()]
    assert batch.input_file_id not in [f.id for f in other.files.list()]
    assert batch.id in [b.id for b in owner.batches.list(limit=100)]
    assert wait(owner, batch.id).status == "completed"


def kill_9(runner_pid: int) -> None:
    """SIGKILL to the runner and everything it started: gateway, tritonserver, its stubs."""
    tree = process_tree(runner_pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_gone(tree, deadline_s=10) == []


def test_a_batch_killed_mid_run_completes_after_a_restart_then_one_expires(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    lines = texts_lines(300, prefix="resume")
    with runner_process(tmp_path / "first", EPITHRE_DATA_DIR=data, **SETTINGS) as (runner, url):
        client = sdk(url)
        batch_id = submit(client, lines).id
        before = wait(client, batch_id, until=lambda b: done(b) >= 30)
        kill_9(runner.pid)
    assert before.status == "in_progress" and done(before) < len(lines)
    # The batches created from now on have 3 s; the one above keeps its 24 h.
    restarted = {**SETTINGS, "EPITHRE_BATCH_COMPLETION_WINDOW_S": "3"}
    with runner_process(tmp_path / "second", EPITHRE_DATA_DIR=data, **restarted) as (_, url):
        client = sdk(url)
        completed_once_each(client, batch_id, lines)

        slow = texts_lines(200, per_line=8, prefix="slow")
        expired = wait(client, submit(client, slow).id)
        assert expired.status == "expired" and expired.expired_at is not None
        outputs = file_lines(client, expired.output_file_id)
        errors = file_lines(client, expired.error_file_id)
        assert set(once_each(outputs, errors)) == {ln["custom_id"] for ln in slow}
        assert errors and all(ln["error"]["code"] == "batch_expired" for ln in errors)
        assert expired.request_counts.failed == len(errors)
