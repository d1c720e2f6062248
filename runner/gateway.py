"""A `python -m gateway` process on loopback, startable again and again by a supervisor.

Usage:
    gateway = LocalGateway(triton.grpc_url, port=free_port(), settings={"EPITHRE_DRAIN_S": "3"})
    gateway.start()
    wait_http_ok(gateway.ready_url, deadline_s=60, process=gateway.process)
    gateway.stop()
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.paths import ROOT
from runner.probe import answers_ok
from runner.processes import stop_group

# Beyond its drain: uvicorn lets the requests in flight finish, each within its deadline.
STOP_GRACE_S = 40.0


class LocalGateway:
    """The gateway with its own process group, its settings in `EPITHRE_*` variables.

    `settings` are added to this process's environment (and win over it); the target, the
    address and the port are set from the arguments, and the metrics port when one is given.
    `log_path` None: the gateway writes to this process's stdout and stderr.
    """

    def __init__(
        self,
        triton_url: str,
        *,
        port: int,
        metrics_port: int = 0,
        settings: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.triton_url = triton_url
        self.port = port
        self.metrics_port = metrics_port
        self.settings = dict(settings or {})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}/health/ready"

    @property
    def metrics_url(self) -> str:
        """Where /metrics is: its own port when one is set, else the public one."""
        port = self.metrics_port or self.port
        return f"http://127.0.0.1:{port}/metrics"

    @property
    def drain_s(self) -> float:
        return float(self.settings.get("EPITHRE_DRAIN_S", 0))

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            **self.settings,
            "EPITHRE_TRITON_URL": self.triton_url,
            "EPITHRE_HOST": "127.0.0.1",
            "EPITHRE_PORT": str(self.port),
        }
        if self.metrics_port:
            env["EPITHRE_METRICS_PORT"] = str(self.metrics_port)
        return env

    def start(self) -> None:
        command = [sys.executable, "-m", "gateway"]
        if self.log_path is None:
            self.process = subprocess.Popen(
                command, env=self.environment(), cwd=ROOT, start_new_session=True
            )
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A restart appends: the log of the gateway that died stays readable.
        with self.log_path.open("ab" if self.process else "wb") as log:
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        """The process serves HTTP, so it has read the model's facts from a Triton. Not
        /health/ready: readiness follows the Tritons, and a gateway is not restarted for them."""
        return answers_ok(f"{self.base_url}/health/live")

    def stop(self) -> None:
        """SIGTERM: the gateway drains for EPITHRE_DRAIN_S, then finishes what it holds."""
        if self.process is not None:
            stop_group(self.process, grace_s=self.drain_s + STOP_GRACE_S)
