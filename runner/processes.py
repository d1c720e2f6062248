"""Processes as Linux shows them in /proc, and stopping a process group.

Usage:
    stubs = [pid for pid in process_group(server.pid) if "stub" in command_line(pid)]
    stop_group(server, grace_s=30)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        try:
            children.setdefault(int(_stat(child)[1]), []).append(child)
        except (OSError, IndexError):
            continue
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_group(pgid: int) -> list[int]:
    """The live members of process group `pgid`, also those orphaned by a leader that died."""
    members = []
    for pid in _pids():
        with contextlib.suppress(OSError, IndexError):
            if int(_stat(pid)[2]) == pgid and alive(pid):
                members.append(pid)
    return members


def alive(pid: int) -> bool:
    """`pid` exists and is not a zombie (one that only waits for its parent to reap it)."""
    try:
        return _stat(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pids: Iterable[int], *, deadline_s: float) -> list[int]:
    """Wait until none of `pids` is alive; those still alive at the deadline."""
    watched, until = list(pids), time.monotonic() + deadline_s
    while (left := [pid for pid in watched if alive(pid)]) and time.monotonic() < until:
        time.sleep(0.05)
    return left


def arguments(pid: int) -> list[str]:
    """The command line of `pid` as its argv; empty once it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def command_line(pid: int) -> str:
    return " ".join(arguments(pid))


def file_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of the log at `path`; empty if there is none."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_group(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """Stop `process`, the leader of its own process group, and everything left in that group.

    SIGTERM first and SIGKILL to the whole group after `grace_s`. Members that outlive their
    leader (Triton's Python stubs after the server crashed) are killed as well.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
