"""The local tritonserver (runner/triton.py): its command line and its stop, without starting it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from model_repository import wire
from runner.processes import wait_gone
from runner.triton import SHM_DIR, SHM_REGION_PREFIX, LocalTriton, TritonPorts


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
    assert wait_gone([orphan], deadline_s=10) == []


def test_stop_removes_the_shared_memory_of_its_stubs_and_no_other(tmp_path: Path) -> None:
    triton = LocalTriton(tmp_path, ports=TritonPorts(), workdir=tmp_path, log_path=tmp_path / "log")
    ours, gone_early, other = (f"{SHM_REGION_PREFIX}{uuid.uuid4()}" for _ in range(3))
    for region in (ours, gone_early, other):
        (SHM_DIR / region).write_bytes(b"\0")
    stub = f"{sys.executable} -c 'import time; time.sleep(300)'"
    # A crashed "server": two stubs, as the Python backend starts them, named with a region.
    triton.process = subprocess.Popen(
        ["sh", "-c", f"{stub} {ours} & {stub} {gone_early} & echo $!; sleep 300"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert triton.process.stdout is not None
        early_stub = int(triton.process.stdout.readline())
        until = time.monotonic() + 10
        while len(triton.shm_regions) < 2 and time.monotonic() < until:
            triton.note_shm_regions()  # as `ready` does, while the server serves
        assert triton.shm_regions == {ours, gone_early}
        os.kill(early_stub, signal.SIGKILL)
        triton.process.kill()
        triton.process.wait(timeout=10)
        triton.stop()
        assert not (SHM_DIR / ours).exists()
        assert not (SHM_DIR / gone_early).exists()
        assert (SHM_DIR / other).exists()
    finally:
        for region in (ours, gone_early, other):
            (SHM_DIR / region).unlink(missing_ok=True)
