"""Two gateway replicas on one PostgreSQL (EPITHRE_DATABASE_URL) and one data dir, as on several
machines with a shared volume: a batch created through one of them completes through the other
after the first is killed with SIGKILL in the middle of it, every line answered once.
"""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest

from runner.postgres import binaries, scratch_postgres
from runner.processes import wait_gone
from runner.stack import Stack, gateway_process
from runner.triton import free_port
from tests.integration.conftest import cosine
from tests.integration.test_batches import (
    KEY,
    completed_once_each,
    done,
    sdk,
    submit,
    texts_lines,
    vector,
    wait,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        binaries() is None,
        reason="PostgreSQL is missing (Debian package `postgresql`; `make install` installs it)",
    ),
]

# Chunks of 10 lines and a 2 s lease: a dead replica's chunks are soon taken by the other.
SETTINGS = {
    "EPITHRE_API_KEYS": KEY,
    "EPITHRE_BATCH_CHUNK_LINES": "10",
    "EPITHRE_BATCH_LEASE_S": "2",
}


def lease_owners(url: str) -> set[str]:
    """The workers holding chunks now, read straight from the database."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT DISTINCT lease_owner FROM batch_chunks WHERE state = 'running'"
        ).fetchall()
    return {owner for (owner,) in rows}


def test_a_batch_created_through_a_replica_killed_mid_run_completes_through_the_other(
    stack: Stack, tmp_path: Path
) -> None:
    lines = texts_lines(300, prefix="replica")
    with ExitStack() as running:
        postgres = running.enter_context(scratch_postgres(port=free_port()))
        shared = {
            **SETTINGS,
            "EPITHRE_DATABASE_URL": postgres.url,
            "EPITHRE_DATA_DIR": str(tmp_path / "data"),
        }
        doomed, through_a = running.enter_context(gateway_process(stack.triton.grpc_url, **shared))
        _, through_b = running.enter_context(gateway_process(stack.triton.grpc_url, **shared))
        a, b = sdk(through_a), sdk(through_b)
        batch_id = submit(a, lines).id
        # Both replicas' workers hold chunks of it, and some are done.
        before = wait(
            a,
            batch_id,
            until=lambda batch: done(batch) >= 30 and len(lease_owners(postgres.url)) == 2,
        )
        os.killpg(doomed.pid, signal.SIGKILL)
        assert wait_gone([doomed.pid], deadline_s=10) == []
        assert before.status == "in_progress" and done(before) < len(lines)

        answered = completed_once_each(b, batch_id, lines)
        for sample in (lines[0], lines[-1]):
            realtime = httpx.post(
                f"{through_b}/v1/embeddings",
                json=sample["body"],
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=60,
            ).json()
            got = answered[sample["custom_id"]]["response"]["body"]["data"][0]["embedding"]
            want = realtime["data"][0]["embedding"]
            assert cosine(vector(got), vector(want)) >= 0.99999
