"""A batch worker over a fake embedder, with the gateway's real service, stores and checks, for
the unit tests of the Batch API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
from gateway_fakes import FACTS, FakeEmbedder

from gateway.admission import Admission
from gateway.batches.objects import TERMINAL, Batch, CreateBatch
from gateway.batches.store import BatchStore
from gateway.batches.worker import BatchWorker
from gateway.breaker import CircuitBreaker
from gateway.database import Database, SQLiteDatabase
from gateway.files.payloads import DiskPayloads
from gateway.files.store import FileLimits, FileStore
from gateway.metrics import Metrics
from gateway.protocol import Limits
from gateway.service import EmbeddingService
from gateway.settings import Settings
from gateway.validation import request_type

OWNER = bytes.fromhex("aa" * 32)


@dataclass
class Harness:
    store: BatchStore
    files: FileStore
    worker: BatchWorker
    metrics: Metrics
    embedder: FakeEmbedder
    settings: Settings

    async def submit(self, lines: Sequence[bytes | dict]) -> str:
        """Upload `lines` (dicts as JSON) as a batch input file and create a batch of it."""
        raw = b"".join((ln if isinstance(ln, bytes) else orjson.dumps(ln)) + b"\n" for ln in lines)
        file = await self.files.put(OWNER, purpose="batch", filename="in.jsonl", chunks=[raw])
        request = CreateBatch(
            input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h"
        )
        window_s = self.settings.batch_completion_window_s
        return (
            await self.store.create(OWNER, request, model="epithre-embed", window_s=window_s)
        ).id

    async def ended(self, batch_id: str, *, timeout_s: float = 10.0) -> Batch:
        async with asyncio.timeout(timeout_s):
            while (batch := await self.store.get(OWNER, batch_id)).status not in TERMINAL:
                await asyncio.sleep(0.02)
        return batch

    async def reached(self, batch_id: str, done: int, *, timeout_s: float = 10.0) -> Batch:
        """The batch once `done` of its lines are checkpointed."""
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await self.store.get(OWNER, batch_id)
                if batch.request_counts.completed + batch.request_counts.failed >= done:
                    return batch
                await asyncio.sleep(0.02)

    async def lines(self, file_id: str | None) -> list[dict]:
        if file_id is None:
            return []
        content = b"".join([c async for c in await self.files.content(OWNER, file_id)])
        return [orjson.loads(line) for line in content.splitlines()]


def request(custom_id: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def texts(custom_id: str, *items: str, **fields: object) -> dict:
    return request(custom_id, {"model": FACTS.served_model_name, "input": list(items), **fields})


@asynccontextmanager
async def running(
    tmp_path,
    embedder: FakeEmbedder | None = None,
    *,
    clock: Callable[[], float] | None = None,
    start: bool = True,
    database: Database | None = None,
    **settings: object,
) -> AsyncIterator[Harness]:
    """A started worker; `settings` override Settings fields (small chunks and short leases by
    default, so that tests see several chunks and take a dead worker's chunk quickly). Its
    stores are on `database` if given (its owner closes it), else on SQLite in `tmp_path`."""
    options: dict = {"batch_chunk_lines": 2, "batch_lease_s": 0.6} | settings
    config = Settings(**options)
    embedder = embedder or FakeEmbedder()
    metrics = Metrics()
    timing = {} if clock is None else {"clock": clock}
    service = EmbeddingService(
        embedder,
        text_parts=1,
        max_tokens=FACTS.max_tokens,
        deadline_s=config.request_timeout_s,
        admission=Admission(admit_fraction=0.8, fair_fraction=0.5, **timing),
        breaker=CircuitBreaker(embedder.probe, threshold=2, probe_interval_s=60),
        metrics=metrics,
        **timing,
    )
    owned = database is None
    database = database or SQLiteDatabase.open(tmp_path / "epithre.sqlite3")
    store = BatchStore(database)
    files = FileStore(database, DiskPayloads(tmp_path / "files"), limits=FileLimits.of(config))
    worker = BatchWorker(
        store,
        files,
        service,
        request_type=request_type(Limits.of(config, FACTS)),
        facts=FACTS,
        settings=config,
        metrics=metrics,
    )
    harness = Harness(store, files, worker, metrics, embedder, config)
    if start:
        worker.start()
    try:
        yield harness
    finally:
        await worker.stop()
        await service.breaker.close()
        if owned:
            database.close()
