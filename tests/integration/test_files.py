"""The Files API of a real gateway process: the OpenAI SDK's calls, ownership across keys, and a
300 MB upload refused while it streams, the gateway's memory flat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from runner.stack import Stack, gateway_process

pytestmark = pytest.mark.integration

KEYS = ("files-key-1", "files-key-2")
MIB = 1024 * 1024
LINES = b"".join(
    b'{"custom_id":"%d","method":"POST","url":"/v1/embeddings","body":{"input":"kucing %d"}}\n'
    % (i, i)
    for i in range(300)
)


@pytest.fixture(scope="module")
def gateway(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, str, Path]]:
    data = tmp_path_factory.mktemp("files-data")
    settings = {"EPITHRE_API_KEYS": ",".join(KEYS), "EPITHRE_DATA_DIR": str(data)}
    with gateway_process(stack.triton.grpc_url, **settings) as (process, base_url):
        yield process.pid, base_url, data


def sdk(base_url: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def test_the_sdk_creates_retrieves_lists_reads_and_deletes_a_file(gateway, tmp_path):
    _, base_url, data = gateway
    client = sdk(base_url, KEYS[0])
    path = tmp_path / "requests.jsonl"
    path.write_bytes(LINES)
    with path.open("rb") as file:
        created = client.files.create(file=file, purpose="batch")
    retrieved = client.files.retrieve(created.id)
    listed = client.files.list()
    content = client.files.content(created.id).read()
    stored = (data / "files" / created.id).read_bytes()
    deleted = client.files.delete(created.id)
    assert (created.object, created.purpose, created.filename) == ("file", "batch", path.name)
    assert created.bytes == len(LINES)
    assert created.expires_at == created.created_at + 30 * 24 * 3600
    assert abs(created.created_at - time.time()) < 60
    assert retrieved == created
    assert created.id in [f.id for f in listed.data]
    assert content == stored == LINES
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    assert not (data / "files" / created.id).exists()


def test_another_key_gets_404_and_sees_none_of_the_first_key_s_files(gateway):
    _, base_url, _ = gateway
    owner, other = sdk(base_url, KEYS[0]), sdk(base_url, KEYS[1])
    created = owner.files.create(file=("mine.jsonl", LINES), purpose="batch")
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError) as refused:
            call(created.id)
        assert refused.value.body["message"] == f"No such File object: {created.id}"
    assert [f.id for f in other.files.list().data] == []
    assert owner.files.retrieve(created.id) == created


def memory_kib(pid: int) -> dict[str, int]:
    fields = Path(f"/proc/{pid}/status").read_text().splitlines()
    values = dict(line.split(":", 1) for line in fields)
    return {name: int(values[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def test_a_300_mb_upload_is_refused_while_streaming_with_the_gateway_s_memory_flat(gateway):
    pid, base_url, data = gateway
    total = 300 * MIB
    sent = 0
    chunk = (LINES * (MIB // len(LINES) + 1))[:MIB]

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield (
            b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        )
        while sent < total:
            sent += len(chunk)
            yield chunk
        yield b"\r\n--b--\r\n"

    stored = set((data / "files").iterdir())
    before = memory_kib(pid)
    peak = before["VmRSS"]
    uploading = True

    def watch() -> None:
        nonlocal peak
        while uploading:
            peak = max(peak, memory_kib(pid)["VmRSS"])
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        # No Content-Length: a chunked body, so only the bytes counted can refuse it.
        response = httpx.post(
            f"{base_url}/v1/files",
            content=body(),
            headers={
                "authorization": f"Bearer {KEYS[0]}",
                "content-type": "multipart/form-data; boundary=b",
            },
            timeout=60,
        )
    finally:
        uploading = False
        watcher.join()
    after = memory_kib(pid)
    print(
        f"refused after {sent / MIB:.0f} MiB sent in {time.monotonic() - started:.1f} s; RSS "
        f"{before['VmRSS'] // 1024} -> peak {peak // 1024} MiB, VmHWM {before['VmHWM'] // 1024} "
        f"-> {after['VmHWM'] // 1024} MiB"
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "file_too_large", response.text
    assert sent < total  # the answer came before the whole body was sent
    assert peak - before["VmRSS"] < 50 * 1024
    assert after["VmHWM"] - before["VmHWM"] < 50 * 1024
    assert set((data / "files").iterdir()) == stored  # not even a partial file is left
