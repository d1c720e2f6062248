"""The gateway's embedded database: one SQLite file under EPITHRE_DATA_DIR, in WAL mode.

It holds what must outlive the process (the Files and Batch APIs' metadata); payloads live
beside it on disk. Each store creates its own tables with `CREATE TABLE IF NOT EXISTS`.

Usage: `db = Database.open(Path(settings.data_dir) / "epithre.sqlite3")`
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# A writer waits this long for another connection's write lock (a second gateway process on the
# same file) before SQLite answers "database is locked".
BUSY_TIMEOUT_S = 10.0


@dataclass
class Database:
    """One connection, used by one thread at a time: calls run in a worker thread so that the
    event loop never waits on the disk, serialized by a lock (SQLite writes are serial anyway)."""

    connection: sqlite3.Connection
    _lock: threading.Lock

    @classmethod
    def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        connection.row_factory = sqlite3.Row
        # WAL: readers never block the writer, and a commit is durable once it returns
        # (synchronous=FULL), which the batch checkpoints rely on after a kill -9.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        return cls(connection, threading.Lock())

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error; blocking: call it from `run`."""
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one transaction, in a worker thread."""

        def transact() -> T:
            with self.transaction() as connection:
                return work(connection)

        return await asyncio.to_thread(transact)

    def close(self) -> None:
        with self._lock:
            self.connection.close()
