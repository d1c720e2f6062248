"""Start, wait for and stop the tritonserver binary that the nvidia-pytriton wheel ships.

Usage:
    with LocalTriton(Path("model_repository"), ports=TritonPorts.free()) as triton:
        triton.wait_ready(deadline_s=120)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType

from model_repository import wire
from runner.processes import arguments, file_tail, process_group, stop_group

STOP_GRACE_S = 30.0
SHM_DIR = Path("/dev/shm")
# The Python backend gives each stub its own region, named on the stub's command line.
SHM_REGION_PREFIX = "triton_python_backend_shm_region_"
# The ping policy that accepts the gateway's keepalive (wire.KEEPALIVE_TIME_MS): any number of
# pings, with or without calls or data, never counted as strikes. Triton's default answers a
# ping more frequent than every 5 minutes on an idle connection with GOAWAY too_many_pings,
# which ends the calls in flight. Triton pings the gateway as often, so that a vanished gateway's
# connection closes as soon. deploy/triton-entrypoint.sh passes the same flags in production.
KEEPALIVE_FLAGS = (
    f"--grpc-keepalive-time={wire.KEEPALIVE_TIME_MS}",
    f"--grpc-keepalive-timeout={wire.KEEPALIVE_TIMEOUT_MS}",
    "--grpc-keepalive-permit-without-calls=true",
    "--grpc-http2-max-pings-without-data=0",
    f"--grpc-http2-min-recv-ping-interval-without-data={wire.KEEPALIVE_TIME_MS}",
    "--grpc-http2-max-ping-strikes=0",
)


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready in time; the message holds its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8010
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> TritonPorts:
        return cls(http=free_port(), grpc=free_port(), metrics=free_port())


def _pytriton_root() -> Path:
    spec = find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonStartError("nvidia-pytriton is not installed (make install)")
    return Path(spec.origin).parent / "tritonserver"


def prepare_backends(workdir: Path) -> Path:
    """A backend folder whose python backend carries the stub built for this interpreter."""
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    backend = workdir / "backends" / "python"
    if backend.exists():
        shutil.rmtree(backend)
    shutil.copytree(root / "backends" / "python", backend)
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    shutil.copy2(stub, backend / stub.name)
    return backend.parent


def ensembles(model_repository: Path) -> list[str]:
    """The exported ensembles; Triton loads the models they are composed of with them.

    Loading by name (not the whole folder) lets a text-only export leave the committed but
    unconfigured image models alone.
    """
    return sorted(
        config.parent.name
        for config in model_repository.glob("*/config.pbtxt")
        if 'platform: "ensemble"' in config.read_text()
    )


class LocalTriton:
    def __init__(
        self, model_repository: Path, *, ports: TritonPorts, workdir: Path, log_path: Path
    ) -> None:
        self.model_repository = model_repository.resolve()
        self.ports = ports
        self.workdir = workdir
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        # The shared-memory regions of this server's stubs (never another server's), noted while
        # it runs: after a crash the server cannot remove them, and its stubs may be gone before
        # `stop` looks.
        self.shm_regions: set[str] = set()

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def command(self, backend_directory: Path) -> list[str]:
        """The tritonserver command line, with the Python backend in `backend_directory`."""
        return [
            str(_pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in ensembles(self.model_repository)),
            f"--backend-directory={backend_directory}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--log-verbose=0",
            *KEEPALIVE_FLAGS,
        ]

    def start(self) -> None:
        root = _pytriton_root()
        libs = root.parent.parent / "nvidia_pytriton.libs"
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p
        )
        # The Python stub imports the models' packages from the interpreter first on PATH.
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        command = self.command(prepare_backends(self.workdir))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A restart appends: the log of the server that crashed stays readable.
        with self.log_path.open("ab" if self.process else "wb") as log:
            # Own process group: stopping it also stops the Python stubs tritonserver spawned.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def ready(self) -> bool:
        """One probe of /v2/health/ready; once ready, every model's stub runs and is noted."""
        url = f"http://127.0.0.1:{self.ports.http}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status != 200:
                    return False
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        self.note_shm_regions()
        return True

    def note_shm_regions(self) -> None:
        """Note the shared-memory regions of the stubs now in the server's process group."""
        if self.process is not None:
            for pid in process_group(self.process.pid):
                self.shm_regions.update(
                    arg for arg in arguments(pid) if arg.startswith(SHM_REGION_PREFIX)
                )

    def wait_ready(self, *, deadline_s: float = 180.0) -> None:
        until = time.monotonic() + deadline_s
        while time.monotonic() < until:
            if self.process is None or self.process.poll() is not None:
                raise TritonStartError(f"tritonserver exited:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        raise TritonStartError(f"tritonserver not ready after {deadline_s}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return file_tail(self.log_path)

    def stop(self) -> None:
        """Stop the server and its stubs, also those of a server that crashed, and remove the
        shared memory they used (a server that crashed leaves it behind)."""
        if self.process is None:
            return
        self.note_shm_regions()
        # Stubs normally exit with the server. After a crash they live on while it is an unreaped
        # zombie (their check that the parent lives passes), then exit within about a second,
        # leaving their regions: those noted at readiness are removed too.
        stop_group(self.process, grace_s=STOP_GRACE_S)
        for region in self.shm_regions:
            with contextlib.suppress(FileNotFoundError):
                (SHM_DIR / region).unlink()
        self.shm_regions.clear()

    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
