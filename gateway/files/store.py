"""`FileStore`: each API key's files, their metadata in the database and bytes in `Payloads`.

Every read is by owner: a file that is missing, expired, deleted or another key's answers the
same 404, so a key never learns what another stored. A file's row stays hidden (`bytes` NULL)
until its payload is durable; a crash mid-write leaves that row, and the expiry sweep removes it
with whatever the write left. Deleting hides the row first for the same reason.

Usage:
    files = FileStore(database, DiskPayloads(root), limits=FileLimits.of(settings))
    file = await files.create(owner, purpose="batch", filename="in.jsonl", chunks=body,
                              expires_after_s=None)
    async for number, line in files.open_lines(owner, file.id): ...
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from gateway.database import Connection, Database, Row
from gateway.errors import FileTooLarge, QuotaExceeded, ResourceNotFound
from gateway.files.lines import numbered_lines
from gateway.files.objects import FileDeleted, FileList, FileObject, FilePurpose
from gateway.files.payloads import Payloads
from gateway.settings import Settings

SCHEMA = (
    # seq breaks ties of created_at (seconds) in the list's order and its `after` cursor.
    """CREATE TABLE IF NOT EXISTS files (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        bytes BIGINT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        payload TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS files_by_owner ON files (owner, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS files_by_expiry ON files (expires_at)",
)
# Whole and not expired: what a key sees, and what its quota counts.
VISIBLE = "bytes IS NOT NULL AND (expires_at IS NULL OR expires_at > :now)"
# A write unfinished after this long was cut by a crash: far longer than any upload the pace
# floor allows (200 MB at 100 kB/s take 35 minutes) or a batch output takes to write.
STALE_WRITE_S = 24 * 3600
Order = Literal["asc", "desc"]
logger = logging.getLogger("gateway.files")


@dataclass(frozen=True)
class FileLimits:
    """`max_file_bytes` per upload; `quota_bytes` stored per key (0 = no quota); how long a batch
    input file is kept when its upload names no `expires_after` (0 = until deleted)."""

    max_file_bytes: int
    quota_bytes: int
    batch_expiry_s: int

    @classmethod
    def of(cls, settings: Settings) -> FileLimits:
        return cls(
            max_file_bytes=settings.max_file_bytes,
            quota_bytes=settings.file_quota_bytes,
            batch_expiry_s=settings.batch_file_expiry_s,
        )


class FileStore:
    """The Files API's storage; every method is by owner (the caller's identity from auth)."""

    def __init__(
        self,
        database: Database,
        payloads: Payloads,
        *,
        limits: FileLimits,
        clock: Callable[[], float] | None = None,
    ) -> None:
        database.create(SCHEMA)
        self.database = database
        self.payloads = payloads
        self.limits = limits
        self.clock = clock or database.clock

    async def create(
        self,
        owner: bytes,
        *,
        purpose: FilePurpose,
        filename: str,
        chunks: AsyncIterable[bytes],
        expires_after_s: int | None,
    ) -> FileObject:
        """An upload: refused (FileTooLarge, QuotaExceeded) as soon as the bytes streamed pass
        the per-file cap or the owner's quota. `expires_after_s` None: the purpose's default."""
        return await self._write(
            owner, purpose, filename, chunks, expires_after_s=expires_after_s, capped=True
        )

    async def put(
        self,
        owner: bytes,
        *,
        purpose: FilePurpose,
        filename: str,
        chunks: Iterable[bytes] | AsyncIterable[bytes],
        expires_after_s: int | None = None,
    ) -> FileObject:
        """A file the service writes (a batch's output or errors): no per-file cap, and counted
        in the owner's quota but never refused by it, since the work it holds is already done.
        A key over its quota can still fetch its results; its next upload is refused."""
        source = chunks if isinstance(chunks, AsyncIterable) else _async(chunks)
        return await self._write(
            owner, purpose, filename, source, expires_after_s=expires_after_s, capped=False
        )

    async def get(self, owner: bytes, file_id: str) -> FileObject:
        """The file, or ResourceNotFound (`param` "id") if this owner has no such file now."""
        now = self.clock()
        row = await self.database.run(lambda c: _visible(c, owner, file_id, now))
        return _object(row)

    async def content(self, owner: bytes, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks; ResourceNotFound before the first one if there is none."""
        now = self.clock()
        row = await self.database.run(lambda c: _visible(c, owner, file_id, now))
        return await self.payloads.open(row["payload"])

    async def open_lines(
        self, owner: bytes, file_id: str, *, max_line_bytes: int | None = None
    ) -> AsyncIterator[tuple[int, bytes]]:
        """`(line number from 1, line without its \\n)`, streamed (see `numbered_lines`);
        LineTooLong past `max_line_bytes`. Usage: `async for n, line in files.open_lines(o, i)`"""
        chunks = await self.content(owner, file_id)
        async for numbered in numbered_lines(chunks, max_line_bytes=max_line_bytes):
            yield numbered

    async def delete(self, owner: bytes, file_id: str) -> FileDeleted:
        now = self.clock()

        def hide(connection: Connection) -> Row:
            row = _visible(connection, owner, file_id, now)
            # Expired now: hidden at once, and swept later if this process dies before the purge.
            connection.execute(
                "UPDATE files SET expires_at = :at WHERE id = :id", {"at": int(now), "id": file_id}
            )
            return row

        row = await self.database.run(hide)
        await self._purge([(row["id"], row["payload"])])
        return FileDeleted(id=file_id, object="file", deleted=True)

    async def list(
        self,
        owner: bytes,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> FileList:
        """A page of the owner's files by `created_at`; `after` is the last id of the page before
        (ResourceNotFound with `param` "after" if the owner has no such file)."""
        now = self.clock()
        direction = {"asc": ("ASC", ">"), "desc": ("DESC", "<")}[order]

        def page(connection: Connection) -> list[Row]:
            where = ["owner = :owner", VISIBLE]
            values: dict[str, object] = {"owner": owner.hex(), "now": now, "limit": limit + 1}
            if purpose is not None:
                where.append("purpose = :purpose")
                values["purpose"] = purpose
            if after is not None:
                cursor = connection.execute(
                    "SELECT created_at, seq FROM files WHERE id = :id AND owner = :owner "
                    "AND bytes IS NOT NULL",
                    {"id": after, "owner": owner.hex()},
                ).fetchone()
                if cursor is None:
                    raise _not_found(after, param="after")
                where.append(f"(created_at, seq) {direction[1]} (:at, :seq)")
                values |= {"at": cursor["created_at"], "seq": cursor["seq"]}
            return connection.execute(
                f"SELECT * FROM files WHERE {' AND '.join(where)} "
                f"ORDER BY created_at {direction[0]}, seq {direction[0]} LIMIT :limit",
                values,
            ).fetchall()

        rows = await self.database.run(page)
        data = [_object(row) for row in rows[:limit]]
        return FileList(
            object="list",
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(rows) > limit,
        )

    async def expire(self, now: float | None = None) -> int:
        """Remove the files expired at `now` (default: the clock's) and the writes a crash cut
        short; return how many. Expired files are hidden already: this frees their space."""
        at = self.clock() if now is None else now

        def due(connection: Connection) -> list[Row]:
            return connection.execute(
                "SELECT id, payload FROM files WHERE expires_at <= :now "
                "OR (bytes IS NULL AND created_at <= :stale)",
                {"now": at, "stale": at - STALE_WRITE_S},
            ).fetchall()

        rows = await self.database.run(due)
        await self._purge([(row["id"], row["payload"]) for row in rows])
        return len(rows)

    async def _write(
        self,
        owner: bytes,
        purpose: FilePurpose,
        filename: str,
        chunks: AsyncIterable[bytes],
        *,
        expires_after_s: int | None,
        capped: bool,
    ) -> FileObject:
        if purpose not in get_args(FilePurpose):
            raise ValueError(f"not a file purpose: {purpose!r}")
        file_id = f"file-{secrets.token_hex(12)}"
        quota = self.limits.quota_bytes if capped else 0
        started = self.clock()

        def begin(connection: Connection) -> int:
            used = _used(connection, owner, started)
            if quota and used >= quota:
                raise _over_quota(quota, used)
            connection.execute(
                "INSERT INTO files (id, owner, purpose, filename, created_at, payload) "
                "VALUES (:id, :owner, :purpose, :filename, :at, :id)",
                {
                    "id": file_id,
                    "owner": owner.hex(),
                    "purpose": purpose,
                    "filename": filename,
                    "at": int(started),
                },
            )
            return used

        used = await self.database.run(begin)
        try:
            if capped:
                chunks = self._capped(chunks, quota=quota, used=used)
            size = await self.payloads.write(file_id, chunks)
            created = self.clock()
            keep_s = self._expiry(purpose, expires_after_s)

            def finish(connection: Connection) -> Row:
                # Uploads of one key racing each other each passed the check at their start.
                # (On PostgreSQL two of them finishing at the same instant on two replicas may
                # both pass this one too: the quota bounds storage, it is no exact ledger.)
                stored = _used(connection, owner, created)
                if quota and stored + size > quota:
                    raise _over_quota(quota, stored)
                connection.execute(
                    "UPDATE files SET bytes = :bytes, created_at = :at, expires_at = :expires "
                    "WHERE id = :id",
                    {
                        "bytes": size,
                        "at": int(created),
                        "expires": None if keep_s is None else int(created) + keep_s,
                        "id": file_id,
                    },
                )
                return connection.execute(
                    "SELECT * FROM files WHERE id = :id", {"id": file_id}
                ).fetchone()

            row = await self.database.run(finish)
        except BaseException:
            # Refused, failed or cancelled (the client left): nothing of it stays.
            await self._purge([(file_id, file_id)])
            raise
        return _object(row)

    async def _capped(
        self, chunks: AsyncIterable[bytes], *, quota: int, used: int
    ) -> AsyncIterator[bytes]:
        cap = self.limits.max_file_bytes
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise FileTooLarge(f"the file exceeds the limit of {cap} bytes", param="file")
            if quota and used + size > quota:
                raise _over_quota(quota, used)
            yield chunk

    def _expiry(self, purpose: str, expires_after_s: int | None) -> int | None:
        if expires_after_s is not None:
            return expires_after_s
        # As OpenAI: batch input files expire, every other file is kept until deleted.
        if purpose == "batch" and self.limits.batch_expiry_s:
            return self.limits.batch_expiry_s
        return None

    async def _purge(self, files: Sequence[tuple[str, str]]) -> None:
        """Remove `(id, payload key)` pairs: payloads first, so that a crash in between leaves
        hidden rows that the next sweep finds again."""
        for _, payload in files:
            await self.payloads.delete(payload)
        await self.database.run(
            lambda c: c.executemany("DELETE FROM files WHERE id = ?", [(i,) for i, _ in files])
        )


async def expire_every(files: FileStore, *, interval_s: float) -> None:
    """Sweep expired files now and every `interval_s` until cancelled (the app's lifespan runs
    it); a failed sweep is logged and tried again at the next one."""
    while True:
        try:
            if removed := await files.expire():
                logger.info("removed %d expired files", removed)
        except Exception:
            logger.exception("the expiry sweep failed")
        await asyncio.sleep(interval_s)


def _visible(connection: Connection, owner: bytes, file_id: str, now: float) -> Row:
    row = connection.execute(
        f"SELECT * FROM files WHERE id = :id AND owner = :owner AND {VISIBLE}",
        {"id": file_id, "owner": owner.hex(), "now": now},
    ).fetchone()
    if row is None:
        raise _not_found(file_id, param="id")
    return row


def _used(connection: Connection, owner: bytes, now: float) -> int:
    return connection.execute(
        f"SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM files WHERE owner = :owner "
        f"AND {VISIBLE}",
        {"owner": owner.hex(), "now": now},
    ).fetchone()[0]


def _not_found(file_id: str, *, param: str) -> ResourceNotFound:
    # OpenAI's words for a missing file.
    return ResourceNotFound(f"No such File object: {file_id}", param=param)


def _over_quota(quota: int, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"this file would take the API key's stored files over its quota of {quota} bytes "
        f"({used} stored); delete files to make room",
        param="file",
    )


def _object(row: Row) -> FileObject:
    return FileObject(
        id=row["id"],
        object="file",
        bytes=row["bytes"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        filename=row["filename"],
        purpose=row["purpose"],
        status="processed",
    )


async def _async(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
