"""The local tritonserver (runner/triton.py): its command line and its stop, without starting it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from model_repository import wire
from runner.triton import LocalTriton, TritonPorts


def _command(repository: Path) -> list[str]:
    (repository / "embed_text").mkdir(parents=True)
    (repository / "embed_text" / "config.pbtxt").write_text('platform: "ensemble"')
    triton = LocalTriton(
        repository, ports=TritonPorts(), workdir=repository, log_path=repository / "log"
    )
    return triton.command(repository / "backends")


def test_tritonserver_loads_the_exported_ensembles(tmp_path: Path) -> None:
    command = _command(tmp_path)
    assert Path(command[0]).name == "tritonserver"
    assert "--load-model=embed_text" in command
    assert f"--backend-directory={tmp_path / 'backends'}" in command


def test_tritonserver_accepts_the_gateways_keepalive_pings(tmp_path: Path) -> None:
    flags = dict(flag.split("=", 1) for flag in _command(tmp_path)[1:])
    # Pings every KEEPALIVE_TIME_MS, with or without calls or data, are never bad pings.
    assert flags["--grpc-keepalive-permit-without-calls"] == "true"
    assert flags["--grpc-http2-max-pings-without-data"] == "0"
    assert flags["--grpc-http2-max-ping-strikes"] == "0"
    assert int(flags["--grpc-http2-min-recv-ping-interval-without-data"]) <= wire.KEEPALIVE_TIME_MS
    # Triton pings the gateway as often, to drop a vanished gateway's calls as soon.
    assert flags["--grpc-keepalive-time"] == str(wire.KEEPALIVE_TIME_MS)
    assert flags["--grpc-keepalive-timeout"] == str(wire.KEEPALIVE_TIMEOUT_MS)


def test_stop_ends_the_stubs_of_a_tritonserver_that_already_exited(tmp_path: Path) -> None:
    triton = LocalTriton(tmp_path, ports=TritonPorts(), workdir=tmp_path, log_path=tmp_path / "log")
    # A "server" that leaves a child of its process group behind and exits, as a crash does.
    triton.process = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert triton.process.stdout is not None
    orphan = int(triton.process.stdout.readline())
    triton.process.wait(timeout=10)
    triton.stop()
    assert _ended(orphan, deadline_s=10)


def _ended(pid: int, *, deadline_s: float) -> bool:
    """True once `pid` is gone or a zombie (its parent reaps it)."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False
