from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.files.payloads import DiskPayloads


async def stream(*chunks: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        if i == fail_after:
            raise ConnectionError("the client left")
        yield chunk


async def read(payloads: DiskPayloads, key: str) -> bytes:
    return b"".join([chunk async for chunk in await payloads.open(key)])


def test_a_written_payload_reads_back_whole_with_its_size(tmp_path):
    payloads = DiskPayloads(tmp_path / "files")

    async def scenario() -> tuple[int, int, bytes]:
        written = await payloads.write("file-1", stream(b"ab", b"", b"cde"))
        return written, await payloads.size("file-1"), await read(payloads, "file-1")

    assert asyncio.run(scenario()) == (5, 5, b"abcde")
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["file-1"]


def test_a_write_whose_stream_fails_leaves_nothing(tmp_path):
    payloads = DiskPayloads(tmp_path)
    with pytest.raises(ConnectionError):
        asyncio.run(payloads.write("file-1", stream(b"ab", b"cd", fail_after=1)))
    assert list(tmp_path.iterdir()) == []


def test_a_payload_is_invisible_until_its_write_completes(tmp_path):
    payloads = DiskPayloads(tmp_path)
    seen: list[bool] = []

    async def watched() -> AsyncIterator[bytes]:
        yield b"first"
        seen.append((tmp_path / "file-1").exists())
        yield b"second"

    asyncio.run(payloads.write("file-1", watched()))
    assert seen == [False]
    assert (tmp_path / "file-1").read_bytes() == b"firstsecond"


def test_delete_removes_a_payload_and_a_crashed_write_s_leftover(tmp_path):
    payloads = DiskPayloads(tmp_path)
    asyncio.run(payloads.write("file-1", stream(b"x")))
    (tmp_path / "file-2.part").write_bytes(b"half")  # what kill -9 mid-write leaves
    asyncio.run(payloads.delete("file-1"))
    asyncio.run(payloads.delete("file-2"))
    asyncio.run(payloads.delete("file-3"))  # never there: not an error
    assert list(tmp_path.iterdir()) == []


def test_a_reader_opened_before_delete_reads_to_the_end(tmp_path):
    payloads = DiskPayloads(tmp_path)

    async def scenario() -> bytes:
        await payloads.write("file-1", stream(b"x" * 3_000_000))
        reader = await payloads.open("file-1")
        await payloads.delete("file-1")
        return b"".join([chunk async for chunk in reader])

    assert len(asyncio.run(scenario())) == 3_000_000


def test_missing_payloads_raise_file_not_found(tmp_path):
    payloads = DiskPayloads(tmp_path)
    with pytest.raises(FileNotFoundError):
        asyncio.run(payloads.open("file-9"))
    with pytest.raises(FileNotFoundError):
        asyncio.run(payloads.size("file-9"))


@pytest.mark.parametrize("key", ["../escape", "a/b", ".hidden", "", "x.part"])
def test_keys_that_are_not_plain_names_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="not a payload key"):
        asyncio.run(DiskPayloads(tmp_path).write(key, stream(b"x")))
