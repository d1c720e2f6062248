"""How many instances of one model are computing right now, across their stub processes.

Each Python-backend instance runs in a stub process of its own, so the count lives in a small
file: an 8-byte counter changed under an exclusive flock. The file is named after the model and
the Triton server (the stubs' parent), so a restarted server starts from zero.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

COUNTER = struct.Struct("<q")


def occupancy_file(model: str, server_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"epithre-{model}-{server_pid}.occupancy"


class Occupancy:
    """`with occupancy.computing(): ... occupancy.count()`; the count includes the caller."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def count(self) -> int:
        raw = os.pread(self._fd, COUNTER.size, 0)
        return COUNTER.unpack(raw)[0] if len(raw) == COUNTER.size else 0

    def _add(self, delta: int) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self._fd, COUNTER.pack(max(self.count() + delta, 0)), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextmanager
    def computing(self) -> Iterator[None]:
        self._add(1)
        try:
            yield
        finally:
            self._add(-1)

    def close(self) -> None:
        """Close, and remove the file, which the model's instances all leave together (unload,
        shutdown). One that stayed would open a new file on its next start, splitting the count:
        at worst a chunk runs on more threads than cores, never a wrong answer."""
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
