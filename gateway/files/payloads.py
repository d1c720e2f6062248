"""Where the bytes of files live: one small interface, and its default on local disk.

Metadata lives in the database (`FileStore`); a payload is only bytes under a key. Another
implementation (a shared volume or an object store, beside PostgreSQL metadata) fits behind the
same four methods.

Usage: `payloads = DiskPayloads(Path(settings.data_dir) / "files")`
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

READ_CHUNK_BYTES = 1 << 20
# Keys name files on disk: never a path, never hidden, never a partial write's name.
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
PARTIAL = ".part"


class Payloads(Protocol):
    """Bytes by key. A key is written once; readers only ever see a complete payload."""

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store `chunks` under `key` and return their size. The payload is visible, and
        durable, only once this returns; if `chunks` raises (or the task is cancelled), nothing
        is visible and the exception propagates."""
        ...

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The payload's bytes in chunks; opened now, so a later `delete` does not cut a reader
        short. FileNotFoundError if there is none."""
        ...

    async def size(self, key: str) -> int:
        """Bytes stored under `key`; FileNotFoundError if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the payload and whatever an interrupted `write` left; nothing there is fine."""
        ...


class DiskPayloads:
    """One file per key in `root`, written under `<key>.part`, fsynced, then renamed: a crash
    leaves at most a `.part` file, which `delete(key)` removes, never a half payload."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def _path(self, key: str, suffix: str = "") -> Path:
        if not KEY.fullmatch(key):
            raise ValueError(f"not a payload key: {key!r}")
        return self.root / f"{key}{suffix}"

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final, partial = self._path(key), self._path(key, PARTIAL)
        # Every disk call runs in a worker thread: the event loop never waits on the disk.
        file = await asyncio.to_thread(partial.open, "wb")
        size = 0
        try:
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
                    size += len(chunk)
                await asyncio.to_thread(_flush, file)
            finally:
                await asyncio.to_thread(file.close)
            await asyncio.to_thread(_publish, partial, final)
        except BaseException:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(self._path(key).open, "rb")
        return _chunks(file)

    async def size(self, key: str) -> int:
        stat = await asyncio.to_thread(self._path(key).stat)
        return stat.st_size

    async def delete(self, key: str) -> None:
        def remove() -> None:
            self._path(key).unlink(missing_ok=True)
            self._path(key, PARTIAL).unlink(missing_ok=True)

        await asyncio.to_thread(remove)


async def _chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


def _flush(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


def _publish(partial: Path, final: Path) -> None:
    os.replace(partial, final)
    # The rename itself is durable only once the directory is synced.
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
