from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.database import Database


def test_opening_creates_the_folder_and_turns_on_wal(tmp_path):
    database = Database.open(tmp_path / "deep" / "epithre.sqlite3")
    mode = database.connection.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = database.connection.execute("PRAGMA synchronous").fetchone()[0]
    database.close()
    assert (mode, synchronous) == ("wal", 2)  # 2 = FULL


def test_run_commits_and_another_connection_reads_it(tmp_path):
    path = tmp_path / "db.sqlite3"
    database = Database.open(path)
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)")))
    asyncio.run(database.run(lambda c: c.execute("INSERT INTO t VALUES (7)")))
    other = Database.open(path)
    assert other.connection.execute("SELECT v FROM t").fetchall()[0][0] == 7
    database.close()
    other.close()


def test_an_error_rolls_the_whole_transaction_back(tmp_path):
    database = Database.open(tmp_path / "db.sqlite3")
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)")))

    def half(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t VALUES (1)")
        raise ValueError("after the insert")

    with pytest.raises(ValueError, match="after the insert"):
        asyncio.run(database.run(half))
    assert database.connection.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    database.close()


def test_transactions_from_many_tasks_are_serialized(tmp_path):
    database = Database.open(tmp_path / "db.sqlite3")
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE n (v INTEGER)")))
    asyncio.run(database.run(lambda c: c.execute("INSERT INTO n VALUES (0)")))

    def increment(connection: sqlite3.Connection) -> None:
        # Read, then write: two transactions interleaved would lose an increment.
        value = connection.execute("SELECT v FROM n").fetchone()[0]
        connection.execute("UPDATE n SET v = ?", (value + 1,))

    async def many() -> None:
        await asyncio.gather(*(database.run(increment) for _ in range(50)))

    asyncio.run(many())
    assert database.connection.execute("SELECT v FROM n").fetchone()[0] == 50
    database.close()
