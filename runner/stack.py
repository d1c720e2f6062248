"""The whole local stack as a context manager: tritonserver plus a `python -m gateway` process.

Used by the integration tests and the benchmarks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from runner.triton import LocalTriton, TritonPorts, free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = ROOT / "model_repository"


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
    port = free_port()
    env = {
        **os.environ,
        "EPITHRE_TRITON_URL": grpc_url,
        "EPITHRE_HOST": "127.0.0.1",
        "EPITHRE_PORT": str(port),
        **settings,
    }
    process = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base_url}/health/ready", deadline_s=60, process=process)
        yield process, base_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@contextmanager
def running_stack(workdir: Path, repository: Path = DEFAULT_REPOSITORY, **settings: str):
    triton = LocalTriton(
        repository, ports=TritonPorts.free(), workdir=workdir, log_path=workdir / "triton.log"
    )
    with triton:
        triton.wait_ready(deadline_s=180)
        with gateway_process(triton.grpc_url, **settings) as (gateway, base_url):
            yield Stack(triton=triton, gateway=gateway, base_url=base_url)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
