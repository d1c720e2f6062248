"""`SQLiteDatabase`: the embedded default, one SQLite file under EPITHRE_DATA_DIR in WAL mode.

Gateway processes on one machine can share the file (each has its own connection); SQLite
serializes their writes. Every transaction is `BEGIN IMMEDIATE`: it holds the database's one write
lock from its start, which is every row lock PostgreSQL needs, so the stores' `FOR UPDATE` clauses
are dropped here. The clock is this machine's, the only one the processes sharing the file have.

Usage: `db = SQLiteDatabase.open(Path(settings.data_dir) / "epithre.sqlite3")`
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.database.protocol import Connection, Parameters, T

# A writer waits this long for another connection's write lock (a second gateway process on the
# same file) before SQLite answers "database is locked".
BUSY_TIMEOUT_S = 10.0
# Between tries to turn WAL on while another connection turns it on (see `_enter_wal`).
WAL_RETRY_S = 0.02
TYPES = {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"}
# A row lock, outside a string literal (a literal matches first and is kept).
ROW_LOCK = re.compile(r"'(?:[^']|'')*'|\s+FOR\s+UPDATE(?:\s+OF\s+\w+)?(?:\s+SKIP\s+LOCKED)?", re.I)


@functools.lru_cache(maxsize=512)
def dialect(sql: str) -> str:
    """`sql` without its row locks."""
    return ROW_LOCK.sub(lambda m: m.group() if m.group().startswith("'") else "", sql)


class _Connection:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Parameters = ()) -> sqlite3.Cursor:
        return self._connection.execute(dialect(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Parameters]) -> sqlite3.Cursor:
        return self._connection.executemany(dialect(sql), parameters)


def _enter_wal(connection: sqlite3.Connection, *, timeout_s: float) -> None:
    """PRAGMA journal_mode=WAL, retried until `timeout_s`: while another process's connection
    turns WAL on in the same new file (two gateways starting together), SQLite answers "database
    is locked" at once, without waiting in its busy handler."""
    until = time.monotonic() + timeout_s
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= until:
                raise
        time.sleep(WAL_RETRY_S)


@dataclass
class SQLiteDatabase:
    """One connection, used by one thread at a time: calls run in a worker thread so that the
    event loop never waits on the disk, serialized by a lock (SQLite writes are serial anyway)."""

    connection: sqlite3.Connection
    _lock: threading.Lock

    @classmethod
    def open(cls, path: Path) -> SQLiteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        connection.row_factory = sqlite3.Row
        # WAL: readers never block the writer, and a commit is durable once it returns
        # (synchronous=FULL), which the batch checkpoints rely on after a kill -9.
        _enter_wal(connection, timeout_s=BUSY_TIMEOUT_S)
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        return cls(connection, threading.Lock())

    def clock(self) -> float:
        return time.time()

    @contextmanager
    def transaction(self) -> Iterator[_Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error; blocking: call it from `run`."""
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield _Connection(self.connection)
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def create(self, schema: Sequence[str]) -> None:
        with self.transaction() as connection:
            for statement in schema:
                connection.execute(statement.format_map(TYPES))

    async def run(self, work: Callable[[Connection], T]) -> T:
        def transact() -> T:
            with self.transaction() as connection:
                return work(connection)

        return await asyncio.to_thread(transact)

    def close(self) -> None:
        with self._lock:
            self.connection.close()
