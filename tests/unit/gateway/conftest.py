from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from PIL import Image

from gateway.database import Database, PostgresDatabase, SQLiteDatabase
from runner.postgres import binaries, scratch_postgres
from runner.triton import free_port


@pytest.fixture(autouse=True)
def _restore_pillow_limit() -> Iterator[None]:
    # create_app sets Pillow's process-wide pixel limit; other test folders expect theirs back.
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path, monkeypatch) -> None:
    # A gateway keeps its database and files under EPITHRE_DATA_DIR, data/ of the working
    # directory by default: each test gets its own, so none sees another's files or writes into
    # the checkout.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL server (Debian's, started here on a free port) for the session's tests."""
    if binaries() is None:
        pytest.skip("PostgreSQL is missing (Debian package `postgresql`; `make install` has it)")
    with scratch_postgres(port=free_port()) as server:
        yield server.url


@pytest.fixture
def empty_postgres(postgres_url: str) -> str:
    """The session's PostgreSQL, emptied of what earlier tests created."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    """An empty database of each kind the gateway runs on: the stores' tests run on both."""
    if request.param == "sqlite":
        opened: Database = SQLiteDatabase.open(tmp_path / "epithre.sqlite3")
    else:
        opened = PostgresDatabase.open(request.getfixturevalue("empty_postgres"))
    yield opened
    opened.close()
