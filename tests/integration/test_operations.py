"""Readiness, process hygiene and shutdown of the served stack (each test starts its own)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from runner.processes import command_line, process_tree, wait_gone
from runner.stack import runner_process, running_stack

pytestmark = pytest.mark.integration

STUB = "triton_python_backend_stub"


def stub_pids(triton_pid: int) -> list[int]:
    return [p for p in process_tree(triton_pid) if STUB in command_line(p)]


def test_serving_processes_never_load_torch(stack):
    httpx.post(f"{stack.base_url}/v1/embeddings", json={"model": "epithre-embed", "input": "x"})
    pids = [stack.gateway.pid, *stub_pids(stack.triton.process.pid)]
    assert len(pids) >= 4  # gateway + preprocess, encoder, postprocess stubs
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps, command_line(pid)


def test_readiness_turns_503_within_10s_when_a_python_stub_dies(tmp_path):
    with running_stack(tmp_path) as stack:
        ready = f"{stack.base_url}/health/ready"
        assert httpx.get(ready, timeout=10).status_code == 200
        victim = next(
            p for p in stub_pids(stack.triton.process.pid) if "text_encoder" in command_line(p)
        )
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        status = 200
        while time.monotonic() < deadline and status == 200:
            status = httpx.get(ready, timeout=10).status_code
            time.sleep(0.2)
        assert status == 503
        assert httpx.get(f"{stack.base_url}/health/live").status_code == 200


def test_runner_stops_cleanly_on_sigterm_leaving_no_processes(tmp_path):
    with runner_process(tmp_path) as (runner, _):
        tree = process_tree(runner.pid)
        assert any(STUB in command_line(p) for p in tree)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        assert wait_gone(tree, deadline_s=5) == []
