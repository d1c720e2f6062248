"""Realtime first: work at batch priority waits in the towers' queues behind realtime requests."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from model_repository import wire
from tests.integration.direct import infer_texts

pytestmark = pytest.mark.integration

BACKLOG = 10
LONG = ["kata " * 40] * wire.MAX_TEXT_BATCH


def _finished_at(grpc_url: str, texts: list[str], priority: int) -> float:
    infer_texts(grpc_url, texts, priority=priority)
    return time.monotonic()


def test_realtime_requests_overtake_a_queued_batch_backlog(stack):
    url = stack.triton.grpc_url
    with ThreadPoolExecutor(BACKLOG + 1) as pool:
        backlog = [
            pool.submit(_finished_at, url, LONG, wire.PRIORITY_BATCH) for _ in range(BACKLOG)
        ]
        time.sleep(0.3)  # the backlog is queued, both tower instances busy
        sent_at = time.monotonic()
        realtime = [_finished_at(url, ["kucing oren"], wire.PRIORITY_REALTIME) for _ in range(3)]
        batch_done = sorted(f.result() for f in backlog)
    # In arrival order the three would come after the whole backlog; taken first, each waits
    # only for the batch work already computing.
    assert realtime[-1] < batch_done[BACKLOG // 2], (
        [round(t - sent_at, 2) for t in realtime],
        [round(t - sent_at, 2) for t in batch_done],
    )
