"""`BatchStore`: each key's batches in the gateway's database, and the batch-level steps of the
workers that run them.

A batch's input lines are copied into `batch_lines` while its file is validated, so that any
worker can run any chunk without reading the file again (and a file deleted mid-batch changes
nothing); the chunks themselves are `ChunkStore`'s (chunks.py). The batch-level steps (validating
the file, writing the output and error files) are taken with a lease on the batch row, renewed
as they go and taken over by another worker once it runs out. On PostgreSQL, which every replica
shares, the same rows and leases let any replica take any work: batches are taken with
`FOR UPDATE SKIP LOCKED`, and every step that changes a batch locks its row first, so steps on one
batch never interleave (the order of locks is always the batch's row, then its chunks').

Owners are the hex of the caller's identity (gateway/auth.py): another key's batch is missing,
in every route and in lists.

Usage:
    store = BatchStore(database)
    batch = await store.create(owner, request, model="epithre-embed", window_s=86400)
    claim = await store.claim_batch(worker="w1", lease_s=30)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from gateway.batches.chunks import ChunkStore
from gateway.batches.objects import (
    COMPLETION_WINDOW,
    ENDPOINT,
    Batch,
    BatchError,
    BatchErrors,
    BatchList,
    BatchUsage,
    CreateBatch,
    RequestCounts,
)
from gateway.batches.schema import SCHEMA
from gateway.batches.validation import LineRequest
from gateway.database import Connection, Database, Row
from gateway.errors import BatchNotCancellable, ResourceNotFound

TIMESTAMPS = (
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
ACTIVE = "('validating', 'in_progress', 'finalizing', 'cancelling')"
# A done line's `ok` is 1 for the output file and 0 for the error file; NULL (never sent) is an
# error too.
OUTPUT = "ok = 1"
ERRORS = "COALESCE(ok, 0) = 0"


class LeaseLost(Exception):
    """Another worker took the batch over (this one's lease ran out) or it was cancelled."""


@dataclass(frozen=True)
class Claim:
    """A batch whose batch-level step a worker holds: validate it, or close it as `closing`."""

    id: str
    owner: bytes
    input_file_id: str
    closing: str | None
    started: bool  # it reached in_progress, so it has lines to write out
    output_file_id: str | None
    error_file_id: str | None


@dataclass(frozen=True)
class Census:
    by_status: dict[str, int]
    backlog_lines: int  # lines of batches in progress not done yet


class BatchStore:
    """Every method is one transaction; `changed` is set when new work may wait for a worker
    (a batch created or cancelled, a chunk done or given back)."""

    def __init__(self, database: Database, *, clock: Callable[[], float] | None = None) -> None:
        database.create(SCHEMA)
        self._db = database
        self._clock = clock or database.clock
        self.changed = asyncio.Event()
        self.chunks = ChunkStore(database, changed=self.changed, clock=self._clock)

    # The API's side: every read and write is by owner.

    async def create(
        self, owner: bytes, request: CreateBatch, *, model: str, window_s: float
    ) -> Batch:
        now = self._clock()
        batch_id = f"batch_{uuid.uuid4().hex}"

        def insert(db: Connection) -> Batch:
            db.execute(
                "INSERT INTO batches (id, owner, status, input_file_id, model, metadata, "
                "created_at, expires_at) VALUES (?, ?, 'validating', ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    owner.hex(),
                    request.input_file_id,
                    model,
                    None if request.metadata is None else orjson.dumps(request.metadata).decode(),
                    now,
                    now + window_s,
                ),
            )
            return _batch(_owned(db, owner, batch_id))

        batch = await self._db.run(insert)
        self.changed.set()
        return batch

    async def get(self, owner: bytes, batch_id: str) -> Batch:
        return await self._db.run(lambda db: _batch(_owned(db, owner, batch_id)))

    async def page(self, owner: bytes, *, after: str | None, limit: int) -> BatchList:
        """The owner's batches, newest first; `after` is the last id of the page before."""

        def select(db: Connection) -> list[Row]:
            values = {"owner": owner.hex(), "limit": limit + 1}
            if after:
                values["below"] = _owned(db, owner, after, param="after")["seq"]
            return db.execute(
                f"SELECT * FROM batches WHERE owner = :owner {'AND seq < :below' if after else ''} "
                "ORDER BY seq DESC LIMIT :limit",
                values,
            ).fetchall()

        rows = await self._db.run(select)
        data = [_batch(row) for row in rows[:limit]]
        return BatchList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(rows) > limit,
        )

    async def cancel(self, owner: bytes, batch_id: str) -> Batch:
        """validating or in_progress -> cancelling (a worker writes the files, then cancelled);
        cancelling or cancelled stay as they are; any other status is 409."""
        now = self._clock()

        def cancel(db: Connection) -> Batch:
            row = _owned(db, owner, batch_id, for_update=True)
            if row["status"] in ("validating", "in_progress") and row["closing"] is None:
                db.execute(
                    "UPDATE batches SET status = 'cancelling', cancelling_at = ?, "
                    "closing = 'cancelled' WHERE id = ?",
                    (now, batch_id),
                )
            elif row["status"] not in ("cancelling", "cancelled"):
                state = "expiring" if row["closing"] == "expired" else row["status"]
                raise BatchNotCancellable(f"Cannot cancel a batch with status '{state}'.")
            return _batch(_owned(db, owner, batch_id))

        batch = await self._db.run(cancel)
        self.changed.set()
        return batch

    # The batch-level steps of a worker, each under its lease on the batch row.

    async def claim_batch(self, *, worker: str, lease_s: float) -> Claim | None:
        """A batch to validate, or to close (cancelled, done, or past its completion window:
        then marked to close as expired), whose lease is free; None when there is none."""
        now = self._clock()

        def claim(db: Connection) -> Claim | None:
            row = db.execute(
                f"SELECT * FROM batches WHERE status IN {ACTIVE} "
                "AND (lease_expires_at IS NULL OR lease_expires_at < :now) "
                "AND (status = 'validating' OR closing IS NOT NULL OR expires_at <= :now) "
                "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                {"now": now},
            ).fetchone()
            if row is None:
                return None
            closing = row["closing"] or ("expired" if row["expires_at"] <= now else None)
            db.execute(
                "UPDATE batches SET closing = ?, lease_owner = ?, lease_expires_at = ? "
                "WHERE id = ?",
                (closing, worker, now + lease_s, row["id"]),
            )
            return Claim(
                id=row["id"],
                owner=bytes.fromhex(row["owner"]),
                input_file_id=row["input_file_id"],
                closing=closing,
                started=row["in_progress_at"] is not None,
                output_file_id=row["output_file_id"],
                error_file_id=row["error_file_id"],
            )

        return await self._db.run(claim)

    async def stage(
        self, batch_id: str, lines: Sequence[LineRequest], *, worker: str, lease_s: float
    ) -> None:
        """Copy validated lines in (the first call of a validation clears what a crashed one
        left) and renew the lease; LeaseLost once the batch is no longer this worker's to
        validate (cancelled, or taken over)."""

        def stage(db: Connection) -> None:
            _held(db, batch_id, worker, "status = 'validating' AND closing IS NULL")
            db.executemany(
                "INSERT INTO batch_lines (batch_id, line, custom_id, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (batch_id, line) DO UPDATE SET custom_id = excluded.custom_id, "
                "body = excluded.body, ok = NULL, record = NULL",
                [(batch_id, r.line, r.custom_id, r.body) for r in lines],
            )
            self._renew_batch(db, batch_id, lease_s)

        await self._db.run(stage)

    async def clear_lines(self, batch_id: str, *, worker: str) -> None:
        await self._db.run(
            lambda db: (
                _held(db, batch_id, worker),
                db.execute("DELETE FROM batch_lines WHERE batch_id = ?", (batch_id,)),
            )
        )

    async def start(
        self, batch_id: str, *, worker: str, chunk_lines: int, estimated_tokens: int, budget: int
    ) -> bool:
        """validating -> in_progress, its staged lines cut into chunks of `chunk_lines`; or
        failed with token_limit_exceeded when the owner's queued tokens would pass `budget`."""
        now = self._clock()

        def start(db: Connection) -> bool:
            row = _held(db, batch_id, worker, "status = 'validating' AND closing IS NULL")
            # On PostgreSQL, two batches of one key starting at the same instant on two replicas
            # may each pass without the other: the budget bounds queued work, it is no ledger.
            queued = db.execute(
                "SELECT COALESCE(SUM(estimated_tokens), 0) FROM batches WHERE owner = ? "
                "AND status = 'in_progress' AND closing IS NULL",
                (row["owner"],),
            ).fetchone()[0]
            if budget and queued + estimated_tokens > budget:
                error = BatchError(
                    code="token_limit_exceeded",
                    message=f"Enqueued token limit reached: this batch has about "
                    f"{estimated_tokens} tokens and {queued} are queued in this key's batches "
                    f"in progress; the limit is {budget}. Submit a smaller batch or wait until "
                    "some of the batches in progress complete.",
                )
                _fail(db, batch_id, [error], now)
                return False
            lines = [
                r[0]
                for r in db.execute(
                    "SELECT line FROM batch_lines WHERE batch_id = ? ORDER BY line", (batch_id,)
                )
            ]
            db.executemany(
                "INSERT INTO batch_chunks (batch_id, first_line, last_line, state) "
                "VALUES (?, ?, ?, 'pending')",
                [
                    (batch_id, lines[i], lines[min(i + chunk_lines, len(lines)) - 1])
                    for i in range(0, len(lines), chunk_lines)
                ],
            )
            db.execute(
                "UPDATE batches SET status = 'in_progress', in_progress_at = ?, total = ?, "
                "estimated_tokens = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                (now, len(lines), estimated_tokens, batch_id),
            )
            return True

        return await self._db.run(start)

    async def fail(self, batch_id: str, errors: Sequence[BatchError], *, worker: str) -> None:
        """validating -> failed with `errors` (the validation's)."""
        now = self._clock()

        def fail(db: Connection) -> None:
            _held(db, batch_id, worker, "status = 'validating' AND closing IS NULL")
            _fail(db, batch_id, errors, now)

        await self._db.run(fail)

    async def tally(self, batch_id: str) -> tuple[int, int]:
        """How many lines go to the output file and how many to the error file."""
        row = await self._db.run(
            lambda db: db.execute(
                f"SELECT COUNT(*) FILTER (WHERE {OUTPUT}), COUNT(*) FILTER (WHERE {ERRORS}) "
                "FROM batch_lines WHERE batch_id = ?",
                (batch_id,),
            ).fetchone()
        )
        return row[0], row[1]

    async def records(
        self, batch_id: str, *, output: bool, after: int, limit: int
    ) -> list[tuple[int, str, bytes | None]]:
        """`(line, custom_id, record)` of the output file's lines or of the error file's, in
        line order from `after`; `record` None for a line never sent."""
        where = OUTPUT if output else ERRORS
        rows = await self._db.run(
            lambda db: db.execute(
                f"SELECT line, custom_id, record FROM batch_lines WHERE batch_id = ? "
                f"AND line > ? AND {where} ORDER BY line LIMIT ?",
                (batch_id, after, limit),
            ).fetchall()
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def keep_file(
        self, batch_id: str, *, output: bool, file_id: str, worker: str, lease_s: float
    ) -> None:
        """Note a written output or error file (a close taken over does not write it again)."""
        column = "output_file_id" if output else "error_file_id"

        def keep(db: Connection) -> None:
            _held(db, batch_id, worker)
            db.execute(f"UPDATE batches SET {column} = ? WHERE id = ?", (file_id, batch_id))
            self._renew_batch(db, batch_id, lease_s)

        await self._db.run(keep)

    async def close(self, batch_id: str, *, worker: str) -> str:
        """The batch ends as it was closing (completed, expired, cancelled): the lines never
        sent count as failed, and its lines and chunks are dropped (the files hold them)."""
        now = self._clock()

        def close(db: Connection) -> str:
            status = _held(db, batch_id, worker)["closing"]
            db.execute(
                f"UPDATE batches SET status = ?, {status}_at = ?, failed = total - completed, "
                "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                (status, now, batch_id),
            )
            _drop_work(db, batch_id)
            return status

        return await self._db.run(close)

    async def release_batch(self, batch_id: str, *, worker: str) -> None:
        await self._db.run(
            lambda db: db.execute(
                "UPDATE batches SET lease_owner = NULL, lease_expires_at = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (batch_id, worker),
            )
        )

    async def renew_batch(self, batch_id: str, *, worker: str, lease_s: float) -> None:
        """Extend the lease on the batch; LeaseLost if another worker took it over."""

        def renew(db: Connection) -> None:
            _held(db, batch_id, worker)
            self._renew_batch(db, batch_id, lease_s)

        await self._db.run(renew)

    def _renew_batch(self, db: Connection, batch_id: str, lease_s: float) -> None:
        db.execute(
            "UPDATE batches SET lease_expires_at = ? WHERE id = ?",
            (self._clock() + lease_s, batch_id),
        )

    async def census(self) -> Census:
        def count(db: Connection) -> Census:
            by_status = dict(
                db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall()
            )
            backlog = db.execute(
                "SELECT COALESCE(SUM(total - completed - failed), 0) FROM batches "
                "WHERE status = 'in_progress'"
            ).fetchone()[0]
            return Census(by_status=by_status, backlog_lines=backlog)

        return await self._db.run(count)


def _owned(
    db: Connection,
    owner: bytes,
    batch_id: str,
    *,
    param: str = "batch_id",
    for_update: bool = False,
) -> Row:
    row = db.execute(
        f"SELECT * FROM batches WHERE id = ? AND owner = ?{' FOR UPDATE' if for_update else ''}",
        (batch_id, owner.hex()),
    ).fetchone()
    if row is None:
        raise ResourceNotFound(f"No batch found with id '{batch_id}'.", param=param)
    return row


def _held(db: Connection, batch_id: str, worker: str, condition: str = "TRUE") -> Row:
    """The batch's row, locked, if `worker` holds its lease (and `condition` holds)."""
    row = db.execute(
        f"SELECT * FROM batches WHERE id = ? AND lease_owner = ? AND {condition} FOR UPDATE",
        (batch_id, worker),
    ).fetchone()
    if row is None:
        raise LeaseLost(batch_id)
    return row


def _fail(db: Connection, batch_id: str, errors: Sequence[BatchError], now: float) -> None:
    db.execute(
        "UPDATE batches SET status = 'failed', failed_at = ?, errors = ?, lease_owner = NULL, "
        "lease_expires_at = NULL WHERE id = ?",
        (now, BatchErrors(data=list(errors)).model_dump_json(), batch_id),
    )
    _drop_work(db, batch_id)


def _drop_work(db: Connection, batch_id: str) -> None:
    db.execute("DELETE FROM batch_lines WHERE batch_id = ?", (batch_id,))
    db.execute("DELETE FROM batch_chunks WHERE batch_id = ?", (batch_id,))


def _batch(row: Row) -> Batch:
    def at(name: str) -> int | None:
        value = row[name]
        return None if value is None else int(value)

    return Batch(
        id=row["id"],
        endpoint=ENDPOINT,
        model=row["model"],
        errors=None if row["errors"] is None else BatchErrors.model_validate_json(row["errors"]),
        input_file_id=row["input_file_id"],
        completion_window=COMPLETION_WINDOW,
        status=row["status"],
        output_file_id=row["output_file_id"],
        error_file_id=row["error_file_id"],
        created_at=int(row["created_at"]),
        **{name: at(name) for name in TIMESTAMPS},
        request_counts=RequestCounts(
            total=row["total"], completed=row["completed"], failed=row["failed"]
        ),
        metadata=None if row["metadata"] is None else orjson.loads(row["metadata"]),
        usage=BatchUsage.of(row["input_tokens"]),
    )
