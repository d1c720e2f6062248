"""The supervisor (runner/supervisor.py) with a fake child: a shell that leaves a grandchild in
its process group, as tritonserver leaves its Python stubs."""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from runner.processes import alive, stop_group, wait_gone
from runner.supervisor import Backoff, StartFailed, Supervisor

FAST = Backoff(first_s=0.1, max_s=0.4, reset_after_s=0.5)


class FakeChild:
    """Start i lives `lives_s[i]` seconds (the last one repeats), then says why on stderr and
    exits with code 3."""

    def __init__(
        self, lives_s: list[float], *, ready: bool = True, log_path: Path | None = None
    ) -> None:
        self.lives_s = lives_s
        self.is_ready = ready
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: list[float] = []
        self.grandchildren: list[int] = []
        self.stops = 0

    def start(self) -> None:
        life = self.lives_s[min(len(self.started_at), len(self.lives_s) - 1)]
        with contextlib.ExitStack() as held:
            log = held.enter_context(self.log_path.open("ab")) if self.log_path else None
            self.process = subprocess.Popen(
                ["sh", "-c", f"sleep 300 & echo $!; sleep {life}; echo port taken >&2; exit 3"],
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        with self.process.stdout:
            self.grandchildren.append(int(self.process.stdout.readline()))
        self.started_at.append(time.monotonic())

    def ready(self) -> bool:
        return self.is_ready

    def stop(self) -> None:
        self.stops += 1
        if self.process is not None:
            stop_group(self.process, grace_s=5)


@pytest.fixture
def supervise() -> Iterator[Callable[[FakeChild], Supervisor]]:
    started: list[Supervisor] = []

    def supervise(child: FakeChild, **options: float) -> Supervisor:
        supervisor = Supervisor(child, name="fake", backoff=FAST, poll_s=0.02, **options)
        started.append(supervisor)
        supervisor.start()
        return supervisor

    yield supervise
    for supervisor in started:
        supervisor.stop()


def wait_for(condition: Callable[[], bool], *, deadline_s: float = 10) -> None:
    until = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < until, "condition not met in time"
        time.sleep(0.01)


def test_a_crashed_child_is_restarted_after_its_group_is_killed(supervise) -> None:
    child = FakeChild([0.1, 300])
    supervise(child)
    wait_for(lambda: len(child.started_at) == 2)
    assert child.process is not None and child.process.poll() is None
    assert not alive(child.grandchildren[0])  # killed before the new start
    assert alive(child.grandchildren[1])


def test_restarts_back_off_doubling_to_the_cap(supervise) -> None:
    child = FakeChild([0.05])
    supervisor = supervise(child)
    wait_for(lambda: len(child.started_at) == 5)
    assert supervisor.restart_delays[:4] == [0.1, 0.2, 0.4, 0.4]
    gaps = [later - earlier for earlier, later in pairwise(child.started_at[:5])]
    # Each gap is the child's life, the polling and the wait: at least the wait.
    assert all(gap >= delay for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True))


def test_the_backoff_starts_over_after_the_child_served_a_while(supervise) -> None:
    # Two quick crashes, one after serving longer than reset_after_s (0.5 s), one quick again.
    child = FakeChild([0.05, 0.05, 0.7, 0.05, 300])
    supervisor = supervise(child)
    wait_for(lambda: len(child.started_at) == 5)
    assert supervisor.restart_delays == [0.1, 0.2, 0.1, 0.2]


def test_stop_ends_the_child_and_its_group_without_a_restart(supervise) -> None:
    child = FakeChild([300])
    supervisor = supervise(child)
    process = child.process
    assert process is not None
    supervisor.stop()
    assert process.returncode == -15  # SIGTERM, the clean stop
    assert wait_gone(child.grandchildren, deadline_s=5) == []
    time.sleep(0.3)  # three backoffs' worth
    assert len(child.started_at) == 1
    assert supervisor.restart_delays == []


def test_a_first_start_that_fails_raises_the_end_of_its_log_and_leaves_nothing(
    supervise, tmp_path
) -> None:
    log = tmp_path / "fake.log"
    child = FakeChild([0.05], ready=False, log_path=log)
    with pytest.raises(StartFailed) as failed:
        supervise(child)
    assert re.fullmatch(
        rf"fake \(pid \d+\) exited with code 3 before it was ready; the end of {log}:\n"
        "port taken",
        str(failed.value),
    )
    assert child.stops == 1
    assert wait_gone(child.grandchildren, deadline_s=5) == []
    assert len(child.started_at) == 1


def test_a_restart_that_never_gets_ready_counts_as_a_failure(supervise) -> None:
    child = FakeChild([0.05, 300])
    supervisor = supervise(child, ready_deadline_s=0.2)
    child.is_ready = False
    wait_for(lambda: len(child.started_at) == 3)
    # The second start served nothing for 0.2 s: stopped, and the wait doubled.
    assert supervisor.restart_delays[:2] == [0.1, 0.2]
    assert not alive(child.grandchildren[1])


def test_the_backoff_doubles_from_first_to_max() -> None:
    backoff = Backoff(first_s=1, max_s=30)
    assert [backoff.delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_wait_replaced_gives_the_pid_of_the_restarted_child_once_ready(supervise) -> None:
    child = FakeChild([300])
    supervisor = supervise(child)
    first = supervisor.pid
    assert supervisor.ready_pids == [first]
    assert child.process is not None
    child.process.kill()
    second = supervisor.wait_replaced(first, deadline_s=10)
    assert second != first
    assert second == supervisor.pid == child.process.pid
    assert supervisor.ready_pids == [first, second]


def test_wait_replaced_times_out_while_the_same_child_serves(supervise) -> None:
    supervisor = supervise(FakeChild([300]))
    with pytest.raises(TimeoutError, match=f"no child but {supervisor.pid} ready"):
        supervisor.wait_replaced(supervisor.pid, deadline_s=0.2)


class GatedChild(FakeChild):
    """Its start waits for `gate` before it spawns anything."""

    def __init__(self, lives_s: list[float]) -> None:
        super().__init__(lives_s)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def start(self) -> None:
        self.entered.set()
        self.gate.wait(timeout=10)
        super().start()


def test_stop_while_another_thread_starts_the_child_ends_it_once_spawned() -> None:
    child = GatedChild([300])
    supervisor = Supervisor(child, name="fake", backoff=FAST, poll_s=0.02)
    starting = threading.Thread(target=supervisor.start)
    starting.start()
    assert child.entered.wait(timeout=5)
    stopping = threading.Thread(target=supervisor.stop)
    stopping.start()
    time.sleep(0.1)  # stop has begun before the child is spawned
    child.gate.set()
    starting.join(timeout=10)
    stopping.join(timeout=10)
    assert not starting.is_alive() and not stopping.is_alive()
    assert child.process is not None and child.process.returncode == -15
    assert wait_gone(child.grandchildren, deadline_s=5) == []


def test_a_start_after_stop_starts_nothing() -> None:
    child = FakeChild([300])
    supervisor = Supervisor(child, name="fake", backoff=FAST, poll_s=0.02)
    supervisor.stop()
    supervisor.start()
    assert child.started_at == []
