from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import types
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psycopg
import pytest

from gateway.database import (
    Connection,
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    postgres,
    sqlite,
)


def test_opening_sqlite_creates_the_folder_and_turns_on_wal(tmp_path):
    database = SQLiteDatabase.open(tmp_path / "deep" / "epithre.sqlite3")
    mode = database.connection.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = database.connection.execute("PRAGMA synchronous").fetchone()[0]
    database.close()
    assert (mode, synchronous) == ("wal", 2)  # 2 = FULL


def _open_at_once(path: str, barrier: Barrier) -> None:
    """In a child process: an error exits it with code 1."""
    barrier.wait()
    SQLiteDatabase.open(Path(path)).close()


def test_two_processes_opening_a_new_sqlite_file_at_once_both_open_it(tmp_path):
    # Turning WAL on at the same moment failed one of the two about one time in three (two
    # gateways of a cluster starting on a fresh data dir): 20 tries catch that.
    fork = multiprocessing.get_context("fork")
    for attempt in range(20):
        barrier = fork.Barrier(2)
        path = str(tmp_path / f"{attempt}.sqlite3")
        processes = [fork.Process(target=_open_at_once, args=(path, barrier)) for _ in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=30)
        assert [process.exitcode for process in processes] == [0, 0]


def test_sqlite_commits_what_another_process_s_connection_then_reads(tmp_path):
    path = tmp_path / "db.sqlite3"
    database = SQLiteDatabase.open(path)
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)")))
    asyncio.run(database.run(lambda c: c.execute("INSERT INTO t VALUES (7)")))
    other = SQLiteDatabase.open(path)
    assert other.connection.execute("SELECT v FROM t").fetchall()[0][0] == 7
    database.close()
    other.close()


def test_postgres_commits_what_another_gateway_then_reads(empty_postgres):
    database, other = PostgresDatabase.open(empty_postgres), PostgresDatabase.open(empty_postgres)
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)")))
    asyncio.run(database.run(lambda c: c.execute("INSERT INTO t VALUES (7)")))
    assert asyncio.run(other.run(lambda c: c.execute("SELECT v FROM t").fetchall()[0][0])) == 7
    database.close()
    other.close()


def count(database: Database, table: str) -> int:
    return asyncio.run(
        database.run(lambda c: c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    )


def test_an_error_rolls_the_whole_transaction_back(database):
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)")))

    def half(connection: Connection) -> None:
        connection.execute("INSERT INTO t VALUES (1)")
        raise ValueError("after the insert")

    with pytest.raises(ValueError, match="after the insert"):
        asyncio.run(database.run(half))
    assert count(database, "t") == 0


def test_reads_for_update_then_writes_from_many_tasks_lose_no_increment(database):
    asyncio.run(database.run(lambda c: c.execute("CREATE TABLE n (v INTEGER)")))
    asyncio.run(database.run(lambda c: c.execute("INSERT INTO n VALUES (0)")))

    def increment(connection: Connection) -> None:
        # Read, then write: two transactions interleaved would lose an increment.
        value = connection.execute("SELECT v FROM n FOR UPDATE").fetchone()[0]
        connection.execute("UPDATE n SET v = ?", (value + 1,))

    async def many() -> None:
        await asyncio.gather(*(database.run(increment) for _ in range(50)))

    asyncio.run(many())
    value = asyncio.run(database.run(lambda c: c.execute("SELECT v FROM n").fetchone()[0]))
    assert value == 50


def test_rows_read_by_position_and_by_name_and_placeholders_of_both_kinds(database):
    database.create(["CREATE TABLE IF NOT EXISTS t (seq {serial}, name TEXT, body {blob})"])

    def write_and_read(connection: Connection) -> list[tuple]:
        connection.executemany(
            "INSERT INTO t (name, body) VALUES (?, ?)", [("a", b"\x00\x01"), ("b", b"")]
        )
        rows = connection.execute(
            "SELECT * FROM t WHERE name = :name OR body = :body ORDER BY seq",
            {"name": "a", "body": b""},
        ).fetchall()
        return [(row[0], row["name"], bytes(row["body"]), tuple(row)[1]) for row in rows]

    assert asyncio.run(database.run(write_and_read)) == [
        (1, "a", b"\x00\x01", "a"),
        (2, "b", b"", "b"),
    ]


def test_creating_the_schema_again_keeps_what_is_there(database):
    schema = ["CREATE TABLE IF NOT EXISTS t (seq {serial}, v INTEGER)"]
    database.create(schema)
    asyncio.run(database.run(lambda c: c.execute("INSERT INTO t (v) VALUES (1)")))
    database.create(schema)
    assert count(database, "t") == 1


def test_gateways_starting_together_create_the_schema_once(empty_postgres):
    schema = [f"CREATE TABLE IF NOT EXISTS t{i} (seq {{serial}}, v INTEGER)" for i in range(20)]
    databases = [PostgresDatabase.open(empty_postgres) for _ in range(4)]
    errors: list[BaseException] = []
    go = threading.Barrier(len(databases))

    def start(database: PostgresDatabase) -> None:
        go.wait()
        try:
            database.create(schema)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tables = count(databases[0], "pg_tables WHERE schemaname = 'public'")
    for database in databases:
        database.close()
    assert (errors, tables) == ([], 20)


def test_a_gateway_whose_clock_is_an_hour_slow_keeps_the_database_s_time(
    empty_postgres, monkeypatch
):
    slow = types.SimpleNamespace(time=lambda: time.time() - 3600, monotonic=time.monotonic)
    monkeypatch.setattr(postgres, "time", slow)
    database = PostgresDatabase.open(empty_postgres)
    with psycopg.connect(empty_postgres) as connection:
        server = float(connection.execute("SELECT EXTRACT(EPOCH FROM now())").fetchone()[0])
    clock = database.clock()
    database.close()
    assert clock == pytest.approx(server, abs=1.0)


def test_sqlite_drops_row_locks_but_not_words_in_literals():
    assert (
        sqlite.dialect(
            "SELECT * FROM c JOIN b ON b.id = c.b WHERE x = 'FOR UPDATE' LIMIT 1 FOR UPDATE OF c "
            "SKIP LOCKED"
        )
        == "SELECT * FROM c JOIN b ON b.id = c.b WHERE x = 'FOR UPDATE' LIMIT 1"
    )
    assert (
        sqlite.dialect("SELECT v FROM n WHERE id = ? FOR UPDATE") == "SELECT v FROM n WHERE id = ?"
    )


def test_postgres_gets_psycopg_s_placeholders_outside_literals():
    assert (
        postgres.dialect("SELECT ?, :name, '?:x%', 5 % 2, v::text FROM t WHERE a = ? AND b = :b")
        == "SELECT %s, %(name)s, '?:x%%', 5 %% 2, v::text FROM t WHERE a = %s AND b = %(b)s"
    )
