"""`ChunkStore`: the chunks of the batches in progress, taken, renewed and committed by workers.

A chunk is a range of a batch's lines with a state (pending, running, done) and a lease: the
worker that takes it renews the lease while it runs, and a chunk whose lease ran out (its worker
died, or stalled) is taken again by any worker. The lease is a fencing token: `attempts` counts
the takings, and a write names the attempt it holds, so a stalled worker that wakes after its
chunk was taken over writes nothing. A chunk's results are written into its lines in the
transaction that marks it done, so they become visible only with that checkpoint: a crash at any
moment loses at most the chunks in flight, which run again, and never writes a line twice.
Workers on every replica sharing a PostgreSQL take chunks with `FOR UPDATE SKIP LOCKED`, each a
different one without waiting; a commit locks its batch's row, then the chunk's.

Usage:
    chunk = await store.chunks.claim(worker="w1", lease_s=30)
    outcome, build = await store.chunks.commit(chunk, results, build=fingerprint, worker="w1")
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from gateway.database import Connection, Database

# A chunk is held by `worker` while its lease runs and its batch still wants its results.
HELD = """state = 'running' AND lease_owner = :worker AND attempts = :attempt
    AND batch_id = :batch AND first_line = :first
    AND EXISTS (SELECT 1 FROM batches WHERE id = :batch AND status = 'in_progress'
                AND closing IS NULL)"""


class Commit(Enum):
    DONE = "done"
    LOST = "lost"  # the lease ran out, or the batch was cancelled or expired meanwhile
    OTHER_BUILD = "other_build"  # the batch's vectors come from another build of the model


@dataclass(frozen=True)
class ChunkLine:
    line: int
    custom_id: str
    body: bytes


@dataclass(frozen=True)
class Chunk:
    batch_id: str
    owner: bytes
    first_line: int
    last_line: int
    attempt: int
    lines: tuple[ChunkLine, ...]


@dataclass(frozen=True)
class LineResult:
    line: int
    ok: bool  # answered 2xx
    record: bytes  # its line of the output or error file
    tokens: int


class ChunkStore:
    """Every method is one transaction; `changed` is set when a chunk is done or given back."""

    def __init__(
        self,
        database: Database,
        *,
        changed: asyncio.Event,
        clock: Callable[[], float],
    ) -> None:
        self._db = database
        self._clock = clock
        self.changed = changed

    async def claim(self, *, worker: str, lease_s: float) -> Chunk | None:
        """A pending chunk, or a running one whose lease ran out, of a batch in progress."""
        now = self._clock()

        def claim(db: Connection) -> Chunk | None:
            row = db.execute(
                "SELECT c.batch_id, c.first_line, c.last_line, c.attempts, b.owner "
                "FROM batch_chunks c JOIN batches b ON b.id = c.batch_id "
                "WHERE b.status = 'in_progress' AND b.closing IS NULL AND b.expires_at > :now "
                "AND (c.state = 'pending' OR (c.state = 'running' AND c.lease_expires_at < :now)) "
                "ORDER BY b.seq, c.first_line LIMIT 1 FOR UPDATE OF c SKIP LOCKED",
                {"now": now},
            ).fetchone()
            if row is None:
                return None
            batch_id, first, last = row["batch_id"], row["first_line"], row["last_line"]
            db.execute(
                "UPDATE batch_chunks SET state = 'running', lease_owner = ?, "
                "lease_expires_at = ?, attempts = attempts + 1 "
                "WHERE batch_id = ? AND first_line = ?",
                (worker, now + lease_s, batch_id, first),
            )
            lines = db.execute(
                "SELECT line, custom_id, body FROM batch_lines WHERE batch_id = ? "
                "AND line BETWEEN ? AND ? ORDER BY line",
                (batch_id, first, last),
            ).fetchall()
            return Chunk(
                batch_id=batch_id,
                owner=bytes.fromhex(row["owner"]),
                first_line=first,
                last_line=last,
                attempt=row["attempts"] + 1,
                lines=tuple(ChunkLine(r[0], r[1], r[2]) for r in lines),
            )

        return await self._db.run(claim)

    async def renew(self, chunk: Chunk, *, worker: str, lease_s: float) -> bool:
        """Extend the chunk's lease; False once it is lost (then its results would be refused)."""
        values = _chunk_key(chunk, worker) | {"until": self._clock() + lease_s}
        renewed = await self._db.run(
            lambda db: (
                db.execute(
                    f"UPDATE batch_chunks SET lease_expires_at = :until WHERE {HELD}", values
                ).rowcount
            )
        )
        return renewed == 1

    async def release(self, chunk: Chunk, *, worker: str) -> None:
        """Give a held chunk back undone, for any worker to take at once."""
        await self._db.run(
            lambda db: db.execute(
                "UPDATE batch_chunks SET state = 'pending', lease_owner = NULL, "
                f"lease_expires_at = NULL WHERE {HELD}",
                _chunk_key(chunk, worker),
            )
        )
        self.changed.set()

    async def commit(
        self, chunk: Chunk, results: Sequence[LineResult], *, build: str | None, worker: str
    ) -> tuple[Commit, str | None]:
        """The chunk's checkpoint: its lines' results, the chunk done and the batch's counts in
        one transaction, if the chunk is still held and its vectors come from the batch's build
        (the first chunk's build becomes the batch's). The last chunk turns the batch to
        finalizing. Returns the outcome and the batch's build."""
        now = self._clock()

        def commit(db: Connection) -> tuple[Commit, str | None]:
            key = _chunk_key(chunk, worker)
            # The batch's row first: commits of one batch take turns, so the last one sees every
            # other chunk done, and a cancel waits until the chunk is in.
            batch = db.execute(
                "SELECT build FROM batches WHERE id = ? FOR UPDATE", (chunk.batch_id,)
            ).fetchone()
            held = db.execute(f"SELECT 1 FROM batch_chunks WHERE {HELD} FOR UPDATE", key)
            if held.fetchone() is None:
                return Commit.LOST, None
            batch_build = batch[0]
            if build is not None and batch_build not in (None, build):
                return Commit.OTHER_BUILD, batch_build
            db.executemany(
                "UPDATE batch_lines SET ok = ?, record = ? WHERE batch_id = ? AND line = ?",
                [(int(r.ok), r.record, chunk.batch_id, r.line) for r in results],
            )
            db.execute(
                "UPDATE batch_chunks SET state = 'done', lease_owner = NULL, "
                "lease_expires_at = NULL WHERE batch_id = :batch AND first_line = :first",
                key,
            )
            completed = sum(r.ok for r in results)
            db.execute(
                "UPDATE batches SET completed = completed + ?, failed = failed + ?, "
                "input_tokens = input_tokens + ?, build = COALESCE(build, ?) WHERE id = ?",
                (
                    completed,
                    len(results) - completed,
                    sum(r.tokens for r in results),
                    build,
                    chunk.batch_id,
                ),
            )
            undone = db.execute(
                "SELECT 1 FROM batch_chunks WHERE batch_id = ? AND state != 'done' LIMIT 1",
                (chunk.batch_id,),
            ).fetchone()
            if undone is None:
                db.execute(
                    "UPDATE batches SET status = 'finalizing', finalizing_at = ?, "
                    "closing = 'completed' WHERE id = ?",
                    (now, chunk.batch_id),
                )
            return Commit.DONE, batch_build or build

        outcome = await self._db.run(commit)
        self.changed.set()
        return outcome

    async def rebase(self, batch_id: str, *, old: str, new: str) -> bool:
        """The model was upgraded from build `old` for good: every chunk done is done again, so
        that all of the batch's vectors come from `new`. False if the batch changed meanwhile."""

        def rebase(db: Connection) -> bool:
            cursor = db.execute(
                "UPDATE batches SET build = ?, completed = 0, failed = 0, input_tokens = 0 "
                "WHERE id = ? AND build = ? AND status = 'in_progress' AND closing IS NULL",
                (new, batch_id, old),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(
                "UPDATE batch_chunks SET state = 'pending' WHERE batch_id = ? AND state = 'done'",
                (batch_id,),
            )
            db.execute(
                "UPDATE batch_lines SET ok = NULL, record = NULL WHERE batch_id = ?", (batch_id,)
            )
            return True

        return await self._db.run(rebase)


def _chunk_key(chunk: Chunk, worker: str) -> dict[str, object]:
    return {
        "worker": worker,
        "attempt": chunk.attempt,
        "batch": chunk.batch_id,
        "first": chunk.first_line,
    }
