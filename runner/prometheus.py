"""Debian's Prometheus with the deployment's config (deploy/prometheus/), its jobs pointed at
local targets, and a wait on its HTTP API.

Usage:
    prometheus = LocalPrometheus({"gateway": ["127.0.0.1:9101"], "triton": ["127.0.0.1:8002"]},
                                 port=free_port(), workdir=tmp)
    prometheus.start()
    up = poll_api(prometheus.url, "/api/v1/query", lambda data: ..., deadline_s=30, query="up")
    prometheus.stop()
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from runner.paths import DEPLOY
from runner.probe import answers_ok
from runner.processes import stop_group

DEPLOYMENT = DEPLOY / "prometheus"
BINARY = shutil.which("prometheus")
STOP_GRACE_S = 20.0


def scrape_config(targets: Mapping[str, Sequence[str]], *, interval_s: float) -> dict[str, Any]:
    """The deployment's prometheus.yml with each job's targets replaced by `targets[job]`, its
    rules loaded from deploy/, scraping and evaluating every `interval_s`."""
    config = yaml.safe_load((DEPLOYMENT / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    if jobs != set(targets):
        raise ValueError(f"prometheus.yml has the jobs {sorted(jobs)}, not {sorted(targets)}")
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": list(targets[job["job_name"]])}]
    interval = f"{round(interval_s * 1000)}ms"
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(DEPLOYMENT / name) for name in config["rule_files"]]
    return config


def poll_api(
    url: str, path: str, done: Callable[[Any], bool], *, deadline_s: float, **params: str
) -> Any:
    """The `data` of a Prometheus API answer once `done(data)` holds, or the last one at the
    deadline (None when the server never answered)."""
    data = None
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        try:
            data = httpx.get(f"{url}{path}", params=params, timeout=5).json()["data"]
        except (httpx.HTTPError, ValueError, KeyError):
            pass  # not listening yet, or answering 503 while it starts
        else:
            if done(data):
                break
        time.sleep(0.25)
    return data


class LocalPrometheus:
    """`targets`: job name -> host:port of each target; every job of the deployment's config."""

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]],
        *,
        port: int,
        workdir: Path,
        interval_s: float = 1.0,
    ) -> None:
        self.config = scrape_config(targets, interval_s=interval_s)
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if BINARY is None:
            raise FileNotFoundError("prometheus is missing (Debian package `prometheus`)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config))
        with self.log_path.open("ab" if self.process else "wb") as log:
            self.process = subprocess.Popen(
                [
                    BINARY,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        return answers_ok(f"{self.url}/-/ready")

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace_s=STOP_GRACE_S)
