from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from gateway.database import Database
from gateway.errors import FileTooLarge, QuotaExceeded, ResourceNotFound
from gateway.files.lines import LineTooLong
from gateway.files.payloads import DiskPayloads
from gateway.files.store import STALE_WRITE_S, FileLimits, FileStore

ALICE = bytes.fromhex("aa" * 32)
BOB = bytes.fromhex("bb" * 32)
START = 1_700_000_000.0
DAY = 24 * 3600
LIMITS = FileLimits(max_file_bytes=1000, quota_bytes=0, batch_expiry_s=30 * DAY)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@contextmanager
def store(
    database: Database, tmp_path, limits: FileLimits = LIMITS
) -> Iterator[tuple[FileStore, Clock]]:
    """A store on `database` (the fixture: each test runs on SQLite and on PostgreSQL)."""
    clock = Clock()
    yield (
        FileStore(database, DiskPayloads(tmp_path / "files"), limits=limits, clock=clock),
        clock,
    )


async def stream(*chunks: bytes, pulled: list[int] | None = None) -> AsyncIterator[bytes]:
    for chunk in chunks:
        if pulled is not None:
            pulled.append(len(chunk))
        yield chunk


def upload(files: FileStore, owner: bytes, body: bytes, **options):
    options.setdefault("expires_after_s", None)
    return files.create(owner, purpose="batch", filename="in.jsonl", chunks=stream(body), **options)


async def content(files: FileStore, owner: bytes, file_id: str) -> bytes:
    return b"".join([chunk async for chunk in await files.content(owner, file_id)])


def stored_rows(database: Database) -> int:
    """Rows in the files table, hidden ones included."""
    count = "SELECT count(*) FROM files"
    return asyncio.run(database.run(lambda c: c.execute(count).fetchone()[0]))


def payload_names(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "files").iterdir())


def test_a_created_file_is_the_openai_file_object_and_reads_back(database, tmp_path):
    with store(database, tmp_path) as (files, _):

        async def scenario():
            created = await upload(files, ALICE, b'{"a":1}\n{"b":2}\n')
            return (
                created,
                await files.get(ALICE, created.id),
                await content(files, ALICE, created.id),
            )

        created, got, body = asyncio.run(scenario())
    assert created == got
    assert created.model_dump() == {
        "id": created.id,
        "object": "file",
        "bytes": 16,
        "created_at": int(START),
        "expires_at": int(START) + 30 * DAY,
        "filename": "in.jsonl",
        "purpose": "batch",
        "status": "processed",
    }
    assert created.id.startswith("file-") and len(created.id) == 29
    assert body == b'{"a":1}\n{"b":2}\n'


def test_expires_after_is_anchored_at_created_at(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        created = asyncio.run(upload(files, ALICE, b"x", expires_after_s=3600))
    assert created.expires_at == created.created_at + 3600


def test_batch_files_expiry_setting_zero_keeps_them_until_deleted(database, tmp_path):
    limits = FileLimits(max_file_bytes=1000, quota_bytes=0, batch_expiry_s=0)
    with store(database, tmp_path, limits) as (files, _):
        assert asyncio.run(upload(files, ALICE, b"x")).expires_at is None


def test_put_writes_service_files_without_cap_or_expiry(database, tmp_path):
    with store(database, tmp_path) as (files, _):

        async def scenario():
            output = await files.put(
                ALICE, purpose="batch_output", filename="out.jsonl", chunks=[b"y" * 600] * 3
            )
            return output, await content(files, ALICE, output.id)

        output, body = asyncio.run(scenario())
    assert (output.bytes, output.expires_at, output.purpose) == (1800, None, "batch_output")
    assert body == b"y" * 1800


def test_an_upload_over_the_file_cap_is_refused_while_streaming_and_leaves_nothing(
    database, tmp_path
):
    pulled: list[int] = []
    with store(database, tmp_path) as (files, _):
        chunks = stream(*[b"z" * 300] * 10, pulled=pulled)
        with pytest.raises(FileTooLarge) as refused:
            asyncio.run(
                files.create(
                    ALICE,
                    purpose="batch",
                    filename="big.jsonl",
                    chunks=chunks,
                    expires_after_s=None,
                )
            )
        listed = asyncio.run(files.list(ALICE))
    assert refused.value.param == "file"
    assert sum(pulled) == 1200  # the chunk that passed 1000 bytes, and no further
    assert listed.data == []
    assert payload_names(tmp_path) == []


def test_a_file_exactly_at_the_cap_is_accepted(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        assert asyncio.run(upload(files, ALICE, b"z" * 1000)).bytes == 1000


def test_the_quota_refuses_an_upload_once_stored_plus_streamed_pass_it(database, tmp_path):
    limits = FileLimits(max_file_bytes=1000, quota_bytes=1500, batch_expiry_s=0)
    with store(database, tmp_path, limits) as (files, _):
        asyncio.run(upload(files, ALICE, b"a" * 1000))
        with pytest.raises(QuotaExceeded) as refused:
            asyncio.run(upload(files, ALICE, b"b" * 501))
        fits = asyncio.run(upload(files, ALICE, b"c" * 500))
        other_key = asyncio.run(upload(files, BOB, b"d" * 1000))
    assert (refused.value.status, refused.value.param) == (413, "file")
    assert "1500" in refused.value.message
    assert (fits.bytes, other_key.bytes) == (500, 1000)


def test_a_full_quota_refuses_before_reading_any_byte(database, tmp_path):
    limits = FileLimits(max_file_bytes=1000, quota_bytes=1000, batch_expiry_s=0)
    pulled: list[int] = []
    with store(database, tmp_path, limits) as (files, _):
        asyncio.run(upload(files, ALICE, b"a" * 1000))
        with pytest.raises(QuotaExceeded):
            asyncio.run(
                files.create(
                    ALICE,
                    purpose="batch",
                    filename="in.jsonl",
                    chunks=stream(b"b", pulled=pulled),
                    expires_after_s=None,
                )
            )
    assert pulled == []


def test_batch_results_count_in_the_quota_but_are_never_refused(database, tmp_path):
    limits = FileLimits(max_file_bytes=1000, quota_bytes=1000, batch_expiry_s=0)
    with store(database, tmp_path, limits) as (files, _):
        output = asyncio.run(
            files.put(ALICE, purpose="batch_output", filename="out.jsonl", chunks=[b"r" * 1500])
        )
        with pytest.raises(QuotaExceeded):
            asyncio.run(upload(files, ALICE, b"x"))
        asyncio.run(files.delete(ALICE, output.id))
        assert asyncio.run(upload(files, ALICE, b"x")).bytes == 1
    assert output.bytes == 1500


def test_expired_files_no_longer_count_in_the_quota(database, tmp_path):
    limits = FileLimits(max_file_bytes=1000, quota_bytes=1000, batch_expiry_s=0)
    with store(database, tmp_path, limits) as (files, clock):
        asyncio.run(upload(files, ALICE, b"a" * 1000, expires_after_s=3600))
        clock.now += 3600
        assert asyncio.run(upload(files, ALICE, b"b" * 1000)).bytes == 1000


def test_uploads_racing_for_the_last_room_of_a_quota_store_only_one(database, tmp_path):
    limits = FileLimits(max_file_bytes=1000, quota_bytes=1000, batch_expiry_s=0)
    with store(database, tmp_path, limits) as (files, _):

        async def scenario():
            second_done = asyncio.Event()

            async def slow() -> AsyncIterator[bytes]:
                yield b"a" * 300
                await second_done.wait()
                yield b"a" * 300

            async def fast() -> AsyncIterator[bytes]:
                yield b"b" * 600

            first = asyncio.create_task(
                files.create(
                    ALICE, purpose="batch", filename="1", chunks=slow(), expires_after_s=None
                )
            )
            await asyncio.sleep(0.05)  # the first upload has begun before the second
            second = await files.create(
                ALICE, purpose="batch", filename="2", chunks=fast(), expires_after_s=None
            )
            second_done.set()
            with pytest.raises(QuotaExceeded):
                await first
            return second, await files.list(ALICE)

        second, listed = asyncio.run(scenario())
    assert [f.id for f in listed.data] == [second.id]
    assert payload_names(tmp_path) == [second.id]


def test_another_key_gets_the_answer_of_a_file_that_never_existed(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        created = asyncio.run(upload(files, ALICE, b"secret\n"))

        async def attempts():
            errors = []
            for call in (
                lambda: files.get(BOB, created.id),
                lambda: files.content(BOB, created.id),
                lambda: files.delete(BOB, created.id),
                lambda: anext(files.open_lines(BOB, created.id)),
                lambda: files.list(BOB, after=created.id),
            ):
                with pytest.raises(ResourceNotFound) as refused:
                    await call()
                errors.append(refused.value)
            return errors, await files.list(BOB), await files.get(ALICE, created.id)

        errors, listed, still = asyncio.run(attempts())
        with pytest.raises(ResourceNotFound) as never:
            asyncio.run(files.get(BOB, "file-" + "0" * 24))
    assert [(e.status, e.code, e.param) for e in errors] == [(404, None, "id")] * 4 + [
        (404, None, "after")
    ]
    assert errors[0].message == f"No such File object: {created.id}"
    assert never.value.message == "No such File object: file-" + "0" * 24
    assert listed.data == []
    assert still == created


def test_the_anonymous_owner_is_an_owner_like_any_key(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        created = asyncio.run(upload(files, b"", b"x"))
        assert asyncio.run(files.get(b"", created.id)) == created
        with pytest.raises(ResourceNotFound):
            asyncio.run(files.get(ALICE, created.id))


def test_an_expired_file_is_hidden_at_once_and_swept_later(database, tmp_path):
    with store(database, tmp_path) as (files, clock):
        created = asyncio.run(upload(files, ALICE, b"x", expires_after_s=3600))
        kept = asyncio.run(upload(files, ALICE, b"y", expires_after_s=7200))
        clock.now += 3599
        assert asyncio.run(files.get(ALICE, created.id)) == created
        clock.now += 1
        with pytest.raises(ResourceNotFound):
            asyncio.run(files.get(ALICE, created.id))
        assert [f.id for f in asyncio.run(files.list(ALICE)).data] == [kept.id]
        assert payload_names(tmp_path) == sorted([created.id, kept.id])
        assert asyncio.run(files.expire()) == 1
        assert payload_names(tmp_path) == [kept.id]
        assert asyncio.run(files.expire(clock.now + 3600)) == 1
    assert payload_names(tmp_path) == []


def test_the_sweep_removes_a_write_cut_by_a_crash_only_once_it_is_stale(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        # What kill -9 in the middle of an upload leaves: a hidden row and a partial payload.
        asyncio.run(
            database.run(
                lambda c: c.execute(
                    "INSERT INTO files (id, owner, purpose, filename, created_at, payload) "
                    "VALUES ('file-cut', ?, 'batch', 'in.jsonl', ?, 'file-cut')",
                    (ALICE.hex(), int(START)),
                )
            )
        )
        (tmp_path / "files" / "file-cut.part").write_bytes(b"half")
        assert asyncio.run(files.list(ALICE)).data == []
        assert asyncio.run(files.expire(START + 3600)) == 0
        assert payload_names(tmp_path) == ["file-cut.part"]
        assert asyncio.run(files.expire(START + STALE_WRITE_S)) == 1
        rows = stored_rows(database)
    assert (payload_names(tmp_path), rows) == ([], 0)


def test_delete_answers_deleted_and_frees_the_payload(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        created = asyncio.run(upload(files, ALICE, b"x"))
        deleted = asyncio.run(files.delete(ALICE, created.id))
        with pytest.raises(ResourceNotFound):
            asyncio.run(files.delete(ALICE, created.id))
    assert deleted.model_dump() == {"id": created.id, "object": "file", "deleted": True}
    assert payload_names(tmp_path) == []


def test_pages_follow_created_at_with_after_limit_and_has_more(database, tmp_path):
    with store(database, tmp_path) as (files, clock):
        ids = []
        for second in (0, 1, 1, 2, 3):  # two files in the same second keep creation order
            clock.now = START + second
            ids.append(asyncio.run(upload(files, ALICE, b"x")).id)
        newest_first = ids[::-1]
        first = asyncio.run(files.list(ALICE, limit=2))
        second = asyncio.run(files.list(ALICE, limit=2, after=first.last_id))
        last = asyncio.run(files.list(ALICE, limit=2, after=second.last_id))
        oldest_first = asyncio.run(files.list(ALICE, order="asc", limit=10))
        after_oldest = asyncio.run(files.list(ALICE, order="asc", after=ids[0]))
    assert [f.id for f in first.data] == newest_first[:2]
    assert (first.first_id, first.last_id, first.has_more) == (ids[4], ids[3], True)
    assert [f.id for f in second.data] == newest_first[2:4] and second.has_more
    assert [f.id for f in last.data] == newest_first[4:] and not last.has_more
    assert [f.id for f in oldest_first.data] == ids and not oldest_first.has_more
    assert [f.id for f in after_oldest.data] == ids[1:]


def test_an_empty_list_has_no_first_or_last_id(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        listed = asyncio.run(files.list(ALICE))
    assert listed.model_dump() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_list_filters_by_purpose(database, tmp_path):
    with store(database, tmp_path) as (files, _):
        upload_id = asyncio.run(upload(files, ALICE, b"x")).id
        output = asyncio.run(
            files.put(ALICE, purpose="batch_output", filename="o.jsonl", chunks=[b"y"])
        )
        batch = asyncio.run(files.list(ALICE, purpose="batch"))
        outputs = asyncio.run(files.list(ALICE, purpose="batch_output"))
    assert [f.id for f in batch.data] == [upload_id]
    assert [f.id for f in outputs.data] == [output.id]


def test_open_lines_streams_numbered_lines_of_the_owner_s_file(database, tmp_path):
    with store(database, tmp_path) as (files, _):

        async def scenario():
            created = await upload(files, ALICE, b'{"custom_id":"a"}\n\n{"custom_id":"b"}')
            return [numbered async for numbered in files.open_lines(ALICE, created.id)]

        assert asyncio.run(scenario()) == [
            (1, b'{"custom_id":"a"}'),
            (2, b""),
            (3, b'{"custom_id":"b"}'),
        ]


def test_open_lines_stops_at_a_line_over_its_cap(database, tmp_path):
    with store(database, tmp_path) as (files, _):

        async def scenario():
            created = await upload(files, ALICE, b"short\n" + b"l" * 100 + b"\n")
            return [n async for n in files.open_lines(ALICE, created.id, max_line_bytes=50)]

        with pytest.raises(LineTooLong) as refused:
            asyncio.run(scenario())
    assert refused.value.number == 2


def test_a_cancelled_upload_leaves_nothing(database, tmp_path):
    with store(database, tmp_path) as (files, _):

        async def scenario():
            started = asyncio.Event()

            async def endless() -> AsyncIterator[bytes]:
                while True:
                    yield b"x"
                    started.set()
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(
                files.create(
                    ALICE, purpose="batch", filename="in", chunks=endless(), expires_after_s=None
                )
            )
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await files.list(ALICE)

        assert asyncio.run(scenario()).data == []
        rows = stored_rows(database)
    assert (payload_names(tmp_path), rows) == ([], 0)
