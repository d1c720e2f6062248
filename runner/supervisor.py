"""Keep a child process group serving: restart it with backoff whenever it exits on its own.

Usage:
    supervisor = Supervisor(LocalTriton(...), name="tritonserver")
    supervisor.start()  # the first start, in this thread: StartFailed if it never gets ready
    try:
        killed = supervisor.pid
        os.kill(killed, signal.SIGKILL)
        supervisor.wait_replaced(killed, deadline_s=60)  # the pid of the new child, once ready
    finally:
        supervisor.stop()  # stops the child; no restart
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from runner.processes import file_tail

log = logging.getLogger(__name__)


class Child(Protocol):
    """What the supervisor runs: LocalTriton, LocalGateway, LocalHaproxy, LocalPrometheus."""

    @property
    def log_path(self) -> Path | None:
        """Where the child writes its output; None: to this process's."""

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The leader of the child's process group, set by `start`."""

    def start(self) -> None:
        """Spawn the child as the leader of a new process group."""

    def ready(self) -> bool:
        """One readiness probe."""

    def stop(self) -> None:
        """End the whole process group, also after its leader died, and remove what it left
        behind (shared memory, sockets); called after every exit as well."""


C = TypeVar("C", bound=Child)


class StartFailed(RuntimeError):
    """The child exited, or was not ready in time, after a start."""


@dataclass(frozen=True)
class Backoff:
    """Waits before restarts: `first_s` doubling up to `max_s`; a child that served for
    `reset_after_s` before it exited is restarted after `first_s` again."""

    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay_s(self, failures: int) -> float:
        """The wait before the next start after `failures` consecutive failures (>= 1)."""
        return min(self.max_s, self.first_s * 2 ** (failures - 1))


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class Supervisor(Generic[C]):
    def __init__(
        self,
        child: C,
        *,
        name: str,
        backoff: Backoff = Backoff(),
        ready_deadline_s: float = 180.0,
        poll_s: float = 0.2,
    ) -> None:
        self.child = child
        self.name = name
        self.backoff = backoff
        self.ready_deadline_s = ready_deadline_s
        self.poll_s = poll_s
        # The waits before each restart so far, in order.
        self.restart_delays: list[float] = []
        # The pid of every start that got ready, in order; notified on `_served`.
        self.ready_pids: list[int] = []
        self._served = threading.Condition()
        self._stopping = threading.Event()
        # Held by `start` until it has launched: `stop` from another thread (Ctrl-C while a
        # cluster starts its children side by side) waits for it instead of missing a child
        # that `start` spawns after `stop` looked.
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The pid of the child started last (it may have exited since)."""
        process = self.child.process
        assert process is not None, f"{self.name} was never started"
        return process.pid

    def start(self) -> None:
        """Start the child, wait until it is ready, then watch it from a thread.

        Does nothing once `stop` was called."""
        with self._starting:
            if self._stopping.is_set():
                return
            try:
                self._launch()
            except StartFailed:
                self.child.stop()
                raise
            self._thread = threading.Thread(
                target=self._supervise, name=f"supervise {self.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop watching, then stop the child cleanly; also while `start` waits for it."""
        self._stopping.set()
        with self._starting:
            thread = self._thread
        if thread is not None:
            thread.join()
        self.child.stop()

    def wait_replaced(self, pid: int, *, deadline_s: float) -> int:
        """The pid of a child other than `pid` once it is ready; TimeoutError at the deadline."""
        with self._served:
            if not self._served.wait_for(
                lambda: bool(self.ready_pids) and self.ready_pids[-1] != pid, timeout=deadline_s
            ):
                raise TimeoutError(f"{self.name}: no child but {pid} ready after {deadline_s} s")
            return self.ready_pids[-1]

    def _launch(self) -> None:
        """Start the child and wait until it is ready, or until `stop` is called."""
        self.child.start()
        process = self.child.process
        assert process is not None
        until = time.monotonic() + self.ready_deadline_s
        while not self.child.ready():
            if process.poll() is not None:
                raise StartFailed(f"{self._ended(process)} before it was ready{self._log()}")
            if time.monotonic() > until:
                raise StartFailed(
                    f"{self.name} not ready after {self.ready_deadline_s:.0f} s{self._log()}"
                )
            if self._stopping.wait(self.poll_s):
                return
        log.info("%s (pid %d) ready", self.name, process.pid)
        with self._served:
            self.ready_pids.append(process.pid)
            self._served.notify_all()

    def _wait_exit(self) -> subprocess.Popen[bytes] | None:
        """The child's process once it exited, or None once `stop` is called."""
        process = self.child.process
        assert process is not None
        while process.poll() is None:
            if self._stopping.wait(self.poll_s):
                return None
        return process

    def _log(self) -> str:
        """The end of the child's log, for a start that failed (in CI it is all one sees)."""
        if self.child.log_path is None:
            return ""
        return f"; the end of {self.child.log_path}:\n{file_tail(self.child.log_path)}"

    def _ended(self, process: subprocess.Popen[bytes]) -> str:
        return f"{self.name} (pid {process.pid}) {exit_reason(process.returncode)}"

    def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            ready_at = time.monotonic()
            exited = self._wait_exit()
            if exited is None:
                return
            up_s = time.monotonic() - ready_at
            if up_s >= self.backoff.reset_after_s:
                failures = 0
            failure = f"{self._ended(exited)} after {up_s:.1f} s"
            # A start that fails is one more failure: the waits keep growing.
            while failure is not None and not self._stopping.is_set():
                failures += 1
                failure = self._restart(failure, delay_s=self.backoff.delay_s(failures))

    def _restart(self, failure: str, *, delay_s: float) -> str | None:
        """Clean up after `failure`, wait `delay_s` and start again; the next failure if any."""
        log.warning("%s; restarting in %.1f s", failure, delay_s)
        # What the child left behind goes first (a crashed tritonserver's stubs live on in its
        # process group, its shared memory stays): a new child finds the machine clean.
        self.child.stop()
        self.restart_delays.append(delay_s)
        if self._stopping.wait(delay_s):
            return None
        try:
            self._launch()
        except StartFailed as error:
            return str(error)
        return None
