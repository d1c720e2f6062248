"""What the stores need of a database, met by `SQLiteDatabase` and `PostgresDatabase`.

A store hands `Database.run` a function of a `Connection`; it runs in one transaction in a worker
thread, so that the event loop never waits on the database. Rows are read by position or by
column name (`row[0]`, `row["id"]`) and iterate their values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Parameters = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    def __getitem__(self, key: int | str) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Parameters = ()) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Parameters]) -> Cursor: ...


class Database(Protocol):
    def clock(self) -> float:
        """Unix seconds by the clock every gateway on this database agrees on: the leases and
        timestamps the stores write."""
        ...

    def create(self, schema: Sequence[str]) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements (with `{serial}` and `{blob}` spelled in
        this dialect) in one transaction; safe while another gateway does the same."""
        ...

    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in one transaction, in a worker thread: committed if it returns,
        rolled back if it raises."""
        ...

    def close(self) -> None: ...
