from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from gateway_fakes import FakeClock

from gateway.batches.chunks import Chunk, Commit, LineResult
from gateway.batches.objects import CreateBatch
from gateway.batches.store import BatchStore, LeaseLost
from gateway.batches.validation import LineRequest
from gateway.database import Database, PostgresDatabase
from gateway.errors import BatchNotCancellable, ResourceNotFound

ALICE = bytes.fromhex("aa" * 32)
BOB = bytes.fromhex("bb" * 32)
START = 1_700_000_000.0
LEASE_S = 30.0
WINDOW_S = 3600.0
REQUEST = CreateBatch(
    input_file_id="file-1", endpoint="/v1/embeddings", completion_window="24h", metadata={"k": "v"}
)


@contextmanager
def opened(database: Database) -> Iterator[tuple[BatchStore, FakeClock]]:
    """A store on `database` (the fixture: each test runs on SQLite and on PostgreSQL)."""
    clock = FakeClock()
    clock.now = START
    yield BatchStore(database, clock=clock), clock


def run(coroutine):
    return asyncio.run(coroutine)


async def create(store: BatchStore, owner: bytes = ALICE) -> str:
    return (await store.create(owner, REQUEST, model="epithre-embed", window_s=WINDOW_S)).id


async def started(
    store: BatchStore,
    lines: list[int],
    *,
    owner: bytes = ALICE,
    chunk_lines: int = 2,
    tokens: int = 10,
    budget: int = 0,
) -> str:
    """A batch validated with requests on `lines`, in progress (or failed over `budget`)."""
    batch_id = await create(store, owner)
    claim = await store.claim_batch(worker="v", lease_s=LEASE_S)
    assert claim is not None and claim.id == batch_id and claim.closing is None
    requests = [LineRequest(n, f"id-{n}", b'{"input": "x"}', 1) for n in lines]
    await store.stage(batch_id, requests, worker="v", lease_s=LEASE_S)
    await store.start(
        batch_id, worker="v", chunk_lines=chunk_lines, estimated_tokens=tokens, budget=budget
    )
    return batch_id


def results(chunk: Chunk, *, ok: bool = True, tokens: int = 3) -> list[LineResult]:
    return [
        LineResult(line=ln.line, ok=ok, record=f"r{ln.line}".encode(), tokens=tokens)
        for ln in chunk.lines
    ]


def test_a_created_batch_is_validating_with_openai_s_fields(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            batch_id = await create(store)
            return await store.get(ALICE, batch_id)

    batch = run(scenario())
    assert batch.id.startswith("batch_") and len(batch.id) == 6 + 32
    assert (batch.status, batch.endpoint, batch.completion_window) == (
        "validating",
        "/v1/embeddings",
        "24h",
    )
    assert (batch.created_at, batch.expires_at) == (int(START), int(START + WINDOW_S))
    assert batch.metadata == {"k": "v"} and batch.model == "epithre-embed"
    assert batch.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    assert batch.usage.input_tokens == 0 and batch.errors is None


def test_another_key_finds_no_batch_of_the_first_anywhere(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            batch_id = await create(store, ALICE)
            for call in (store.get(BOB, batch_id), store.cancel(BOB, batch_id)):
                with pytest.raises(ResourceNotFound) as missing:
                    await call
                assert missing.value.param == "batch_id"
            assert (await store.page(BOB, after=None, limit=20)).data == []
            with pytest.raises(ResourceNotFound):
                await store.page(BOB, after=batch_id, limit=20)
            assert (await store.get(ALICE, batch_id)).status == "validating"

    run(scenario())


def test_pages_go_newest_first_and_say_whether_more_follow(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            ids = [await create(store) for _ in range(5)]
            await create(store, BOB)
            first = await store.page(ALICE, after=None, limit=2)
            second = await store.page(ALICE, after=first.last_id, limit=2)
            last = await store.page(ALICE, after=second.last_id, limit=2)
            return ids, first, second, last

    ids, first, second, last = run(scenario())
    assert [b.id for b in first.data] == [ids[4], ids[3]]
    assert (first.first_id, first.last_id, first.has_more) == (ids[4], ids[3], True)
    assert [b.id for b in second.data] == [ids[2], ids[1]] and second.has_more
    assert [b.id for b in last.data] == [ids[0]] and not last.has_more


def test_cancel_moves_a_running_batch_to_cancelling_once(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            batch_id = await create(store)
            clock.now += 5
            first = await store.cancel(ALICE, batch_id)
            clock.now += 5
            again = await store.cancel(ALICE, batch_id)
            return first, again

    first, again = run(scenario())
    assert first.status == again.status == "cancelling"
    assert first.cancelling_at == again.cancelling_at == int(START + 5)


def test_an_ended_batch_cannot_be_cancelled(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            batch_id = await create(store)
            await store.claim_batch(worker="v", lease_s=LEASE_S)
            await store.fail(batch_id, [], worker="v")
            with pytest.raises(BatchNotCancellable, match="status 'failed'"):
                await store.cancel(ALICE, batch_id)

    run(scenario())


def test_start_cuts_the_staged_lines_into_chunks_and_counts_them(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            clock.now += 2
            batch_id = await started(store, [1, 2, 4, 5, 7], chunk_lines=2)
            batch = await store.get(ALICE, batch_id)
            chunks = []
            while chunk := await store.chunks.claim(worker="w", lease_s=LEASE_S):
                chunks.append(chunk)
            return batch, chunks

    batch, chunks = run(scenario())
    assert (batch.status, batch.in_progress_at, batch.request_counts.total) == (
        "in_progress",
        int(START + 2),
        5,
    )
    assert [(c.first_line, c.last_line) for c in chunks] == [(1, 2), (4, 5), (7, 7)]
    assert [ln.custom_id for ln in chunks[1].lines] == ["id-4", "id-5"]


def test_a_batch_over_the_key_s_queued_token_budget_fails(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            first = await started(store, [1], tokens=60, budget=100)
            second = await started(store, [1], tokens=50, budget=100)
            third = await started(store, [1], owner=BOB, tokens=50, budget=100)
            return [
                await store.get(o, b) for o, b in ((ALICE, first), (ALICE, second), (BOB, third))
            ]

    first, second, third = run(scenario())
    assert (first.status, third.status) == ("in_progress", "in_progress")
    assert second.status == "failed" and second.failed_at is not None
    [error] = second.errors.data
    assert error.code == "token_limit_exceeded"
    assert "50 tokens and 60 are queued" in error.message and "limit is 100" in error.message


def test_a_chunk_whose_worker_died_is_taken_again_once_its_lease_runs_out(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            await started(store, [1, 2], chunk_lines=2)
            dead = await store.chunks.claim(worker="dead", lease_s=LEASE_S)
            assert await store.chunks.claim(worker="alive", lease_s=LEASE_S) is None
            clock.now += LEASE_S + 1
            alive = await store.chunks.claim(worker="alive", lease_s=LEASE_S)
            late, _ = await store.chunks.commit(dead, results(dead), build="b", worker="dead")
            kept, _ = await store.chunks.commit(alive, results(alive), build="b", worker="alive")
            return dead, alive, late, kept

    dead, alive, late, kept = run(scenario())
    assert (dead.attempt, alive.attempt) == (1, 2)
    assert (late, kept) == (Commit.LOST, Commit.DONE)


def test_a_renewed_lease_keeps_the_chunk(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            await started(store, [1])
            chunk = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            clock.now += LEASE_S * 0.9
            renewed = await store.chunks.renew(chunk, worker="w", lease_s=LEASE_S)
            clock.now += LEASE_S * 0.9
            return renewed, await store.chunks.claim(worker="other", lease_s=LEASE_S)

    renewed, other = run(scenario())
    assert renewed and other is None


def test_counts_and_usage_advance_as_chunks_commit_and_the_last_one_finalizes(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            batch_id = await started(store, [1, 2, 3], chunk_lines=2)
            first = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            second = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            await store.chunks.commit(first, results(first), build="b", worker="w")
            middle = await store.get(ALICE, batch_id)
            clock.now += 7
            await store.chunks.commit(second, results(second, ok=False), build=None, worker="w")
            return middle, await store.get(ALICE, batch_id), await store.tally(batch_id)

    middle, final, tally = run(scenario())
    assert middle.status == "in_progress"
    assert middle.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 0}
    assert middle.usage.input_tokens == middle.usage.total_tokens == 6
    assert (final.status, final.finalizing_at) == ("finalizing", int(START + 7))
    assert final.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
    assert tally == (2, 1)


def test_closing_writes_nothing_twice_and_drops_the_lines(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            batch_id = await started(store, [1, 2], chunk_lines=2)
            chunk = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            await store.chunks.commit(chunk, results(chunk), build="b", worker="w")
            claim = await store.claim_batch(worker="c", lease_s=LEASE_S)
            outputs = await store.records(batch_id, output=True, after=0, limit=10)
            errors = await store.records(batch_id, output=False, after=0, limit=10)
            await store.keep_file(batch_id, output=True, file_id="f-1", worker="c", lease_s=1)
            clock.now += 1
            status = await store.close(batch_id, worker="c")
            left = await store.records(batch_id, output=True, after=0, limit=10)
            return claim, outputs, errors, status, await store.get(ALICE, batch_id), left

    claim, outputs, errors, status, batch, left = run(scenario())
    assert (claim.closing, claim.started) == ("completed", True)
    assert outputs == [(1, "id-1", b"r1"), (2, "id-2", b"r2")] and errors == []
    assert (status, batch.status, batch.completed_at) == ("completed", "completed", int(START + 1))
    assert batch.output_file_id == "f-1" and batch.error_file_id is None
    assert left == []


def test_a_batch_past_its_window_closes_as_expired_with_the_rest_failed(database) -> None:
    async def scenario():
        with opened(database) as (store, clock):
            batch_id = await started(store, [1, 2, 3], chunk_lines=2)
            chunk = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            await store.chunks.commit(chunk, results(chunk), build="b", worker="w")
            clock.now = START + WINDOW_S
            no_chunk = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            claim = await store.claim_batch(worker="c", lease_s=LEASE_S)
            unsent = await store.records(batch_id, output=False, after=0, limit=10)
            await store.close(batch_id, worker="c")
            return no_chunk, claim, unsent, await store.get(ALICE, batch_id)

    no_chunk, claim, unsent, batch = run(scenario())
    assert no_chunk is None and claim.closing == "expired"
    assert unsent == [(3, "id-3", None)]
    assert (batch.status, batch.expired_at) == ("expired", int(START + WINDOW_S))
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}


def test_a_cancelled_batch_refuses_the_results_of_its_chunks_in_flight(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            batch_id = await started(store, [1, 2], chunk_lines=1)
            done = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            flying = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            await store.chunks.commit(done, results(done), build="b", worker="w")
            await store.cancel(ALICE, batch_id)
            renewed = await store.chunks.renew(flying, worker="w", lease_s=LEASE_S)
            late, _ = await store.chunks.commit(flying, results(flying), build="b", worker="w")
            claim = await store.claim_batch(worker="c", lease_s=LEASE_S)
            return renewed, late, claim, await store.tally(batch_id)

    renewed, late, claim, tally = run(scenario())
    assert not renewed and late is Commit.LOST
    assert claim.closing == "cancelled" and tally == (1, 1)


def test_the_first_chunk_s_build_is_the_batch_s_and_a_rebase_runs_every_chunk_again(
    database,
) -> None:
    async def scenario():
        with opened(database) as (store, _):
            batch_id = await started(store, [1, 2], chunk_lines=1)
            old = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            new = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            first = await store.chunks.commit(old, results(old), build="old", worker="w")
            refused = await store.chunks.commit(new, results(new), build="new", worker="w")
            rebased = await store.chunks.rebase(batch_id, old="old", new="new")
            after = await store.chunks.commit(new, results(new), build="new", worker="w")
            batch = await store.get(ALICE, batch_id)
            again = await store.chunks.claim(worker="w", lease_s=LEASE_S)
            return first, refused, rebased, after, batch, again

    first, refused, rebased, after, batch, again = run(scenario())
    assert first == (Commit.DONE, "old")
    assert refused == (Commit.OTHER_BUILD, "old")
    assert rebased and after == (Commit.DONE, "new")
    assert batch.request_counts.completed == 1 and batch.status == "in_progress"
    assert again.first_line == 1


def test_a_validation_whose_batch_was_cancelled_stops(database) -> None:
    async def scenario():
        with opened(database) as (store, _):
            batch_id = await create(store)
            await store.claim_batch(worker="v", lease_s=LEASE_S)
            await store.cancel(ALICE, batch_id)
            with pytest.raises(LeaseLost):
                await store.stage(batch_id, [], worker="v", lease_s=LEASE_S)
            await store.release_batch(batch_id, worker="v")
            claim = await store.claim_batch(worker="c", lease_s=LEASE_S)
            await store.close(batch_id, worker="c")
            return claim, await store.get(ALICE, batch_id)

    claim, batch = run(scenario())
    assert (claim.closing, claim.started) == ("cancelled", False)
    assert batch.status == "cancelled" and batch.request_counts.total == 0


@contextmanager
def replicas(url: str, count: int) -> Iterator[list[BatchStore]]:
    """Stores of `count` gateways on one PostgreSQL, each with its own pool and the database's
    clock."""
    databases = [PostgresDatabase.open(url) for _ in range(count)]
    try:
        yield [BatchStore(database) for database in databases]
    finally:
        for database in databases:
            database.close()


def test_workers_on_two_replicas_take_every_chunk_exactly_once(empty_postgres) -> None:
    async def scenario():
        with replicas(empty_postgres, 2) as stores:
            batch_id = await started(stores[0], list(range(1, 61)), chunk_lines=2)
            taken: list[Chunk] = []

            async def work(store: BatchStore, worker: str) -> None:
                while chunk := await store.chunks.claim(worker=worker, lease_s=LEASE_S):
                    taken.append(chunk)
                    await store.chunks.commit(chunk, results(chunk), build="b", worker=worker)

            await asyncio.gather(
                *(work(store, f"{i}-{j}") for i, store in enumerate(stores) for j in range(4))
            )
            return taken, await stores[1].get(ALICE, batch_id)

    taken, batch = run(scenario())
    assert sorted(c.first_line for c in taken) == list(range(1, 61, 2))
    assert {c.attempt for c in taken} == {1}
    assert (batch.status, batch.request_counts.completed) == ("finalizing", 60)


def test_a_claim_passes_a_chunk_another_replica_is_taking_without_waiting(empty_postgres) -> None:
    locked, claimed = threading.Event(), threading.Event()

    def other_replica() -> None:
        # A claim of the first chunk, in the middle of its transaction until this test's claim
        # returns (or for 3 s: a claim that waited for the lock would then take that chunk).
        with psycopg.connect(empty_postgres) as other:
            other.execute("SELECT * FROM batch_chunks WHERE first_line = 1 FOR UPDATE")
            locked.set()
            claimed.wait(timeout=3)

    with replicas(empty_postgres, 1) as (store,):
        run(started(store, [1, 2, 3, 4], chunk_lines=2))
        holder = threading.Thread(target=other_replica)
        holder.start()
        locked.wait()
        began = time.monotonic()
        chunk = run(store.chunks.claim(worker="w", lease_s=LEASE_S))
        waited_s = time.monotonic() - began
        claimed.set()
        holder.join()
    assert chunk.first_line == 3 and waited_s < 1
