"""Debian's redis-server on loopback: the store in which the local gateways share their rate limits.

It keeps nothing on disk (`--save ""`, `--appendonly no`): a restarted server is empty, so every
key's budget starts full again, which is what a lost budget costs here (docs/operations.md).

Usage:
    redis = LocalRedis(port=free_port(), workdir=Path("build/cluster/redis"))
    redis.start()
    redis.url  # redis://127.0.0.1:<port>/0, for EPITHRE_RATE_LIMIT_STORAGE
    redis.stop()
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from runner.processes import stop_group

# Debian's package puts it in /usr/bin; `which` finds one installed elsewhere first.
BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"
# SIGTERM makes it exit at once: with nothing to save there is nothing to wait for.
STOP_GRACE_S = 10.0


class LocalRedis:
    def __init__(self, *, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            BINARY,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            # Budgets are worth a minute at most: not worth a disk write, nor a stall for one.
            "--save",
            "",
            "--appendonly",
            "no",
            # Its working folder (where it would write anything at all) is its own.
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A restart appends: the log of the server that died stays readable.
        with self.log_path.open("ab" if self.process else "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def ready(self) -> bool:
        """It answers PING (listening alone is not enough: it may still be loading)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64) == b"+PONG\r\n"
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace_s=STOP_GRACE_S)
