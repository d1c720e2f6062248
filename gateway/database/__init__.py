"""The gateway's metadata database (the Files and Batch APIs'): embedded SQLite under
EPITHRE_DATA_DIR by default, or the PostgreSQL that EPITHRE_DATABASE_URL names, which several
gateway replicas share. Payloads are not in it: they live behind `gateway.files.payloads`.

The stores write their SQL once, for both:
- placeholders are SQLite's, `?` or `:name` (rewritten for psycopg);
- a transaction that reads rows in order to change them locks them with `FOR UPDATE`, and takes
  work with `FOR UPDATE SKIP LOCKED`: needed where transactions run side by side (PostgreSQL),
  dropped where each holds the whole database (SQLite's BEGIN IMMEDIATE);
- tables name the types spelled differently as `{serial}` (the auto-numbered key) and `{blob}`;
  both take TEXT, INTEGER, BIGINT and DOUBLE PRECISION (a SUM of BIGINT is cast back to BIGINT,
  or PostgreSQL answers a decimal);
- times come from `Database.clock`, the one clock all the gateways on a database agree on.

Usage:
    database = open_database(settings)
    database.create(SCHEMA)
    row = await database.run(lambda db: db.execute("SELECT * FROM t WHERE id = ?", (1,)).fetchone())
"""

from __future__ import annotations

from pathlib import Path

from gateway.database.postgres import PostgresDatabase
from gateway.database.protocol import Connection, Database, Row
from gateway.database.sqlite import SQLiteDatabase
from gateway.settings import Settings

SQLITE_FILE = "epithre.sqlite3"

__all__ = [
    "Connection",
    "Database",
    "PostgresDatabase",
    "Row",
    "SQLiteDatabase",
    "open_database",
]


def open_database(settings: Settings) -> Database:
    """PostgreSQL if `settings.database_url` names one, else SQLite in `settings.data_dir`."""
    if settings.database_url:
        return PostgresDatabase.open(settings.database_url)
    return SQLiteDatabase.open(Path(settings.data_dir) / SQLITE_FILE)
