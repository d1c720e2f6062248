"""The whole local stack as a context manager: tritonserver plus a `python -m gateway` process.

Used by the integration tests and the benchmarks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from runner.gateway import LocalGateway
from runner.paths import DEFAULT_REPOSITORY, ROOT
from runner.processes import process_tree
from runner.triton import LocalTriton, TritonPorts, free_port


@dataclass(frozen=True)
class Stack:
    triton: LocalTriton
    gateway: subprocess.Popen[bytes]
    base_url: str


def wait_http_ok(url: str, *, deadline_s: float, process: subprocess.Popen[bytes]) -> None:
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {deadline_s}s")


@contextmanager
def gateway_process(grpc_url: str, **settings: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A gateway on a free port; its files and batches go to a temporary EPITHRE_DATA_DIR,
    removed at the end, unless `settings` name one."""
    with tempfile.TemporaryDirectory(prefix="epithre-data-") as data_dir:
        gateway = LocalGateway(
            grpc_url, port=free_port(), settings={"EPITHRE_DATA_DIR": data_dir, **settings}
        )
        gateway.start()
        try:
            assert gateway.process is not None
            wait_http_ok(gateway.ready_url, deadline_s=60, process=gateway.process)
            yield gateway.process, gateway.base_url
        finally:
            gateway.stop()


@contextmanager
def running_stack(workdir: Path, repository: Path = DEFAULT_REPOSITORY, **settings: str):
    triton = LocalTriton(
        repository, ports=TritonPorts.free(), workdir=workdir, log_path=workdir / "triton.log"
    )
    with triton:
        triton.wait_ready(deadline_s=180)
        with gateway_process(triton.grpc_url, **settings) as (gateway, base_url):
            yield Stack(triton=triton, gateway=gateway, base_url=base_url)


@contextmanager
def runner_process(workdir: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m runner`, as `make serve` runs it, on free ports and in its own process group;
    `settings` (EPITHRE_* variables) are added to the environment it gives the gateway, whose
    EPITHRE_DATA_DIR is `workdir`/data unless they name one.

    Yields the runner and the gateway's base URL once the gateway is ready; at the end stops the
    runner, and kills whatever it started that is still alive if it does not stop.
    """
    ports, port = TritonPorts.free(), free_port()
    command = [
        *(sys.executable, "-m", "runner", f"--workdir={workdir}"),
        *(f"--triton-http-port={ports.http}", f"--triton-grpc-port={ports.grpc}"),
        f"--triton-metrics-port={ports.metrics}",
    ]
    env = {
        **os.environ,
        "EPITHRE_DATA_DIR": str(workdir / "data"),
        **settings,
        "EPITHRE_HOST": "127.0.0.1",
        "EPITHRE_PORT": str(port),
    }
    runner = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base_url}/health/ready", deadline_s=120, process=runner)
        yield runner, base_url
    finally:
        tree = process_tree(runner.pid)
        if runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            try:
                runner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for pid in tree:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                runner.wait()
