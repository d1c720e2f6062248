"""Debian's PostgreSQL on loopback: the database that gateway replicas share (EPITHRE_DATABASE_URL).

PostgreSQL refuses to run as root, so when this process is root, initdb and the server run as the
`postgres` user, which owns the data directory; every folder above it must let that user through
(pytest's folders under /tmp do not: `scratch_postgres` makes one that does). The first start
creates the cluster (`trust` authentication: it listens on 127.0.0.1 and on a socket in its own
folder only) and the database; later starts, a supervisor's restarts among them, reuse them.
`durable=False` turns fsync off, for tests only: a machine that crashes then loses the database.

Usage:
    postgres = LocalPostgres(port=free_port(), workdir=Path("build/cluster/postgres"))
    postgres.start()
    postgres.url  # postgresql://postgres@127.0.0.1:<port>/epithre, for EPITHRE_DATABASE_URL
    postgres.stop()
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runner.processes import stop_group

# Debian installs each major version side by side, off PATH; the newest one is used.
INSTALLS = Path("/usr/lib/postgresql")
USER = "postgres"
DATABASE = "epithre"
# SIGINT, the fast shutdown, ends the sessions still open and writes a checkpoint in seconds.
STOP_GRACE_S = 30.0


def binaries() -> Path | None:
    """The folder with `initdb` and `postgres`, or None when PostgreSQL is not installed."""
    found = [path.parent for path in INSTALLS.glob("*/bin/postgres")]
    if not found:
        return None
    return max(found, key=lambda folder: int(folder.parent.name))


class LocalPostgres:
    def __init__(self, *, port: int, workdir: Path, durable: bool = True) -> None:
        self.port = port
        self.workdir = workdir
        self.durable = durable
        self.data_dir = workdir / "data"
        self.log_path = workdir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def command(self) -> list[str]:
        return [
            str(_binaries() / "postgres"),
            *("-D", str(self.data_dir), "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1"),
            *("-c", f"unix_socket_directories={self.data_dir}"),
            *("-c", f"fsync={'on' if self.durable else 'off'}"),
        ]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        # A restart appends: the log of the server that died stays readable.
        with self.log_path.open("ab" if self.process else "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_postgres(),
            )

    def ready(self) -> bool:
        """It accepts connections and has the database (created here the first time)."""
        try:
            with psycopg.connect(
                f"postgresql://{USER}@127.0.0.1:{self.port}/postgres",
                autocommit=True,
                connect_timeout=2,
            ) as connection:
                found = connection.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if found is None:
                    connection.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE))
                    )
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        # SIGTERM would wait for every client to disconnect, a gateway's idle pool too.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S)
        stop_group(self.process, grace_s=0)

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            _check_reachable(self.workdir)
        shutil.rmtree(self.data_dir, ignore_errors=True)  # what a cut initdb left
        self.data_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            account = pwd.getpwnam(USER)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        with self.log_path.open("wb") as log:
            subprocess.run(
                [
                    str(_binaries() / "initdb"),
                    *("-D", str(self.data_dir), f"--username={USER}"),
                    *("--auth=trust", "--encoding=UTF8", "--no-locale"),
                    *([] if self.durable else ["--no-sync"]),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                **_as_postgres(),
            )


@contextmanager
def scratch_workdir() -> Iterator[Path]:
    """A new folder under the system's temporary folder that the server's user can enter (pytest's
    own are root's alone), removed at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="epithre-postgres-"))
    try:
        workdir.chmod(0o755)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def scratch_postgres(*, port: int) -> Iterator[LocalPostgres]:
    """A fresh server without fsync in a scratch folder, ready; stopped and removed at the end.
    For tests: `with scratch_postgres(port=free_port()) as postgres: ... postgres.url`."""
    with scratch_workdir() as workdir:
        postgres = LocalPostgres(port=port, workdir=workdir, durable=False)
        try:
            postgres.start()
            _wait_ready(postgres)
            yield postgres
        finally:
            postgres.stop()


def _wait_ready(postgres: LocalPostgres, *, deadline_s: float = 60.0) -> None:
    until = time.monotonic() + deadline_s
    while not postgres.ready():
        assert postgres.process is not None
        if postgres.process.poll() is not None or time.monotonic() > until:
            raise RuntimeError(f"PostgreSQL did not start: see {postgres.log_path}")
        time.sleep(0.1)


def _binaries() -> Path:
    folder = binaries()
    if folder is None:
        raise FileNotFoundError(f"no PostgreSQL under {INSTALLS} (`make install` installs it)")
    return folder


def _as_postgres() -> dict[str, Any]:
    """Popen's arguments that run a child as the `postgres` user when this process is root."""
    if os.geteuid() != 0:
        return {}
    return {"user": USER, "group": pwd.getpwnam(USER).pw_gid, "extra_groups": []}


def _check_reachable(folder: Path) -> None:
    """Raise if the `postgres` user cannot go through every folder above `folder`."""
    account = pwd.getpwnam(USER)
    resolved = folder.resolve()
    for parent in (resolved, *resolved.parents):
        mode = parent.stat()
        if mode.st_uid == account.pw_uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == account.pw_gid:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            raise PermissionError(
                f"PostgreSQL runs as {USER}, which cannot enter {parent}: give the server a "
                "folder that user can reach"
            )
