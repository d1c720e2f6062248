"""runner/postgres.py: Debian's PostgreSQL on loopback, run as its own user, supervised like every
cluster child."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runner.cluster import free_ports
from runner.postgres import USER, LocalPostgres, binaries, scratch_workdir
from runner.processes import wait_gone
from runner.supervisor import Supervisor

pytestmark = pytest.mark.skipif(
    binaries() is None,
    reason="PostgreSQL is missing (Debian package `postgresql`; `make install` installs it)",
)


@pytest.fixture
def supervised() -> Iterator[Supervisor[LocalPostgres]]:
    with scratch_workdir() as workdir:
        local = LocalPostgres(port=free_ports(1)[0], workdir=workdir, durable=False)
        supervisor = Supervisor(local, name="postgres")
        supervisor.start()
        yield supervisor
        supervisor.stop()


def test_it_serves_its_database_on_loopback_as_the_postgres_user_in_its_own_group(
    supervised: Supervisor[LocalPostgres],
) -> None:
    local = supervised.child
    with psycopg.connect(local.url) as connection:
        database, user, fsync = connection.execute(
            "SELECT current_database(), current_user, current_setting('fsync')"
        ).fetchone()
    assert local.url == f"postgresql://postgres@127.0.0.1:{local.port}/epithre"
    assert (database, user, fsync) == ("epithre", "postgres", "off")
    owner = local.data_dir.stat().st_uid
    assert owner == (pwd.getpwnam(USER).pw_uid if os.geteuid() == 0 else os.geteuid())
    assert os.getpgid(supervised.pid) == supervised.pid
    pid = supervised.pid
    supervised.stop()
    assert wait_gone([pid], deadline_s=5) == []
    assert not local.ready()


def test_a_killed_server_is_restarted_on_its_port_with_its_data_kept(
    supervised: Supervisor[LocalPostgres],
) -> None:
    local = supervised.child
    with psycopg.connect(local.url) as connection:
        connection.execute("CREATE TABLE kept (v INTEGER)")
        connection.execute("INSERT INTO kept VALUES (7)")
    killed = supervised.pid
    os.kill(killed, signal.SIGKILL)
    supervised.wait_replaced(killed, deadline_s=30)
    with psycopg.connect(local.url) as connection:
        assert connection.execute("SELECT v FROM kept").fetchall() == [(7,)]
    assert local.log_path.read_text().count("database system is ready to accept connections") == 2


def test_a_durable_server_keeps_fsync_on(tmp_path: Path) -> None:
    command = LocalPostgres(port=5433, workdir=tmp_path).command()
    assert "fsync=on" in command and "listen_addresses=127.0.0.1" in command


def test_it_is_not_ready_while_nothing_answers_on_its_port(tmp_path: Path) -> None:
    assert not LocalPostgres(port=free_ports(1)[0], workdir=tmp_path).ready()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_a_folder_the_postgres_user_cannot_enter_is_named_before_anything_starts(
    tmp_path: Path,
) -> None:
    # pytest's folders under /tmp are root's alone.
    local = LocalPostgres(port=free_ports(1)[0], workdir=tmp_path / "postgres")
    with pytest.raises(PermissionError, match="cannot enter"):
        local.start()
    assert local.process is None
