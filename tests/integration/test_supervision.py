"""`make serve` survives a `kill -9` of tritonserver: the supervisor cleans up and restarts it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from runner.processes import alive, arguments, process_tree, wait_gone
from runner.stack import runner_process
from runner.triton import SHM_DIR, SHM_REGION_PREFIX

pytestmark = pytest.mark.integration

STUB = "triton_python_backend_stub"
BACK_DEADLINE_S = 60


def program(pid: int) -> str:
    argv = arguments(pid)
    return Path(argv[0]).name if argv else ""


def tritonserver(runner_pid: int) -> int:
    (pid,) = (p for p in process_tree(runner_pid) if program(p) == "tritonserver")
    return pid


def stubs(server_pid: int) -> dict[int, str]:
    """The server's Python stubs with the shared-memory region each names."""
    return {
        pid: next(arg for arg in arguments(pid) if arg.startswith(SHM_REGION_PREFIX))
        for pid in process_tree(server_pid)
        if program(pid) == STUB
    }


def any_exist(paths: list[Path]) -> bool:
    return any(path.exists() for path in paths)


def test_a_killed_tritonserver_is_cleaned_up_and_restarted(tmp_path: Path) -> None:
    with runner_process(tmp_path) as (runner, base_url):
        dead = tritonserver(runner.pid)
        dead_stubs = stubs(dead)
        regions = [SHM_DIR / region for region in dead_stubs.values()]
        assert len(dead_stubs) >= 3 and all(region.exists() for region in regions)

        os.kill(dead, signal.SIGKILL)
        killed_at = time.monotonic()
        cleaned_s = back_s = None
        refusals = []
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while back_s is None and time.monotonic() - killed_at < BACK_DEADLINE_S:
                response = client.post(
                    "/v1/embeddings", json={"model": "epithre-embed", "input": "still here"}
                )
                if cleaned_s is None and not any(map(alive, dead_stubs)) and not any_exist(regions):
                    cleaned_s = time.monotonic() - killed_at
                if response.status_code == 200:
                    back_s = time.monotonic() - killed_at
                else:
                    refusals.append((response.status_code, response.headers.get("retry-after")))
                    time.sleep(0.2)
        print(f"stubs and shared memory gone after {cleaned_s} s, serving after {back_s} s")

        assert back_s is not None, f"not serving {BACK_DEADLINE_S} s after the kill: {refusals}"
        assert cleaned_s is not None and cleaned_s <= back_s
        assert refusals, "a request while Triton was gone should have been refused"
        assert {status for status, _ in refusals} == {503}
        assert all(retry_after and int(retry_after) >= 1 for _, retry_after in refusals)
        embedding = response.json()["data"][0]["embedding"]
        assert len(embedding) == 384
        assert sum(v * v for v in embedding) == pytest.approx(1.0, abs=1e-4)
        restarted = tritonserver(runner.pid)
        assert restarted != dead
        new_regions = set(stubs(restarted).values())
        assert new_regions and new_regions.isdisjoint(dead_stubs.values())

        tree = process_tree(runner.pid)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        assert wait_gone(tree, deadline_s=5) == []
        assert not [region for region in new_regions if (SHM_DIR / region).exists()]
