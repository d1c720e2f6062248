"""Debian's HAProxy with deploy/haproxy/haproxy.cfg in front of the local gateways.

Usage:
    haproxy = LocalHaproxy(port=8000, gateways=["127.0.0.1:8101", "127.0.0.1:8102"],
                           workdir=Path("build/cluster"))
    haproxy.start()
    haproxy.server_states()  # {"gateway-1": "UP", "gateway-2": "DOWN"}
    haproxy.stop()  # soft stop: requests in flight finish
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runner.paths import DEPLOY
from runner.processes import stop_group

CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
# Debian installs it in /usr/sbin, which is not on every user's PATH.
BINARY = shutil.which("haproxy") or "/usr/sbin/haproxy"
# The `server` lines of the config: one address variable each.
SERVERS = ("gateway-1", "gateway-2")
BACKEND = "gateways"
# The config's hard-stop-after, and a little more: a soft stop never takes longer.
SOFT_STOP_S = 45.0


def environment(*, bind: str, gateways: Sequence[str], stats_socket: Path) -> dict[str, str]:
    """The variables haproxy.cfg reads: where to listen, the gateways, the admin socket."""
    if len(gateways) != len(SERVERS):
        raise ValueError(f"haproxy.cfg names {len(SERVERS)} gateways, not {len(gateways)}")
    return {
        "LB_BIND": bind,
        **{f"LB_GATEWAY_{i}": address for i, address in enumerate(gateways, start=1)},
        "LB_STATS_SOCKET": str(stats_socket),
    }


def check_config(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`haproxy -c`: HAProxy's own verdict on the config with these variables."""
    return subprocess.run(
        [BINARY, "-c", "-f", str(CONFIG)],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class LocalHaproxy:
    def __init__(self, *, port: int, gateways: Sequence[str], workdir: Path) -> None:
        self.port = port
        self.log_path = workdir / "haproxy.log"
        self.stats_socket = workdir / "haproxy.sock"
        self.variables = environment(
            bind=f"127.0.0.1:{port}", gateways=gateways, stats_socket=self.stats_socket
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab" if self.process else "wb") as log:
            # -db: in the foreground, without a master process; the supervisor is the master.
            self.process = subprocess.Popen(
                [BINARY, "-db", "-f", str(CONFIG)],
                env={**os.environ, **self.variables},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        """It listens (it does so once the config is loaded)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """A soft stop (SIGUSR1): no new connections, the requests in flight finish; then the
        group is ended however it went."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=SOFT_STOP_S)
        stop_group(self.process, grace_s=5)

    def command(self, line: str) -> str:
        """One command on the admin socket (HAProxy's management guide), and its answer."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(5)
            connection.connect(str(self.stats_socket))
            connection.sendall(f"{line}\n".encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        return answer.decode()

    def server_states(self) -> dict[str, str]:
        """Each gateway's state as HAProxy's checks see it: UP, DOWN, MAINT, `UP 1/2`..."""
        rows = csv.DictReader(self.command("show stat").removeprefix("# ").splitlines())
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] in SERVERS
        }
