"""`BatchWorker`: runs the batches, inside the gateway process unless EPITHRE_BATCH_WORKER=false.

One loop takes, in turn, a batch-level step (validate a new batch's file; write the files of a
batch that is done, cancelled or past its completion window) and chunks, at most CHUNKS_AT_ONCE
at a time, so that one chunk's last lines overlap the next one's first. A chunk's lines are
answered by `LineAnswers` (at most EPITHRE_BATCH_MAX_IN_FLIGHT at once, and
EPITHRE_BATCH_IN_FLIGHT_BESIDE_REALTIME while realtime requests come; backing off under load),
its lease renewed meanwhile, and its results committed with its checkpoint. Everything a worker
holds is leased in the database, so a worker that dies leaves nothing behind for longer than
EPITHRE_BATCH_LEASE_S: any worker (this process restarted, or another replica) takes it again.

The model build rule: a batch's vectors all come from one build, the first committed chunk's.
A chunk whose lines came back from several builds (a rolling upgrade) is given back and run
again; one that came back from another build than the batch's is run again while the batch's
build still answers, and once it has not answered for a minute (the upgrade is over) the batch
is rebased: every chunk done is done again on the new build.

Log lines name batches by id, never their contents.

Usage: `worker = BatchWorker(store, files, service, request_type=rt, facts=facts,
settings=settings, metrics=metrics)`, then `worker.start()` in the lifespan and
`await worker.stop()` at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from gateway.batches.answers import Answer, LineAnswers, Pace
from gateway.batches.chunks import Chunk, Commit, LineResult
from gateway.batches.objects import BatchError, BatchStatus
from gateway.batches.records import CANCELLED, EXPIRED, unsent_record
from gateway.batches.store import BatchStore, Claim, LeaseLost
from gateway.batches.validation import InputCheck, LineRequest
from gateway.embedder import ModelFacts
from gateway.errors import ResourceNotFound
from gateway.files.lines import LineTooLong
from gateway.files.store import FileStore
from gateway.metrics import Metrics
from gateway.protocol import EmbeddingRequest
from gateway.service import EmbeddingService
from gateway.settings import Settings

logger = logging.getLogger("gateway.batches")
CHUNKS_AT_ONCE = 2
# How often an idle worker looks for work that another process created (its own routes wake it).
POLL_S = 1.0
# Lines read per transaction (that copies the valid ones in) while validating, and lines read
# per transaction while writing the files.
STAGE_LINES = 1000
RECORD_PAGE = 500
STATUSES: tuple[BatchStatus, ...] = BatchStatus.__args__


class BatchWorker:
    def __init__(
        self,
        store: BatchStore,
        files: FileStore,
        service: EmbeddingService,
        *,
        request_type: type[EmbeddingRequest],
        facts: ModelFacts,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._files = files
        self._answers = LineAnswers(
            service,
            request_type=request_type,
            model=facts.served_model_name,
            pace=Pace.of(settings),
        )
        self._builds = service.builds
        self._settings = settings
        self._lease_s = settings.batch_lease_s
        self._max_tokens = facts.max_tokens
        self._metrics = metrics
        self.id = uuid.uuid4().hex
        self._chunks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop taking work and give back the chunks in flight, for the next worker to take at
        once (a worker killed instead leaves them to their leases)."""
        tasks = [*self._chunks, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        clock = asyncio.get_running_loop().time
        reported = -POLL_S
        while True:
            try:
                busy = await self._step()
                if clock() - reported >= POLL_S:
                    await self._report()
                    reported = clock()
            except Exception:
                # A database error must not end the worker: the next round tries again.
                logger.exception("batch worker round failed")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await self._store.changed.wait()
                self._store.changed.clear()

    async def _step(self) -> bool:
        """Take one piece of work; False when there was none to take."""
        claim = await self._store.claim_batch(worker=self.id, lease_s=self._lease_s)
        if claim is not None:
            await (self._validate(claim) if claim.closing is None else self._close(claim))
            return True
        if len(self._chunks) >= CHUNKS_AT_ONCE:
            return False
        chunk = await self._store.chunks.claim(worker=self.id, lease_s=self._lease_s)
        if chunk is None:
            return False
        task = asyncio.create_task(self._run_chunk(chunk))
        self._chunks.add(task)
        task.add_done_callback(self._chunks.discard)
        return True

    async def _report(self) -> None:
        census = await self._store.census()
        for status in STATUSES:
            self._metrics.batches.labels(status).set(census.by_status.get(status, 0))
        self._metrics.batch_backlog.set(census.backlog_lines)

    async def _validate(self, claim: Claim) -> None:
        check = InputCheck(max_tokens=self._max_tokens)
        staged: list[LineRequest] = []
        try:
            await self._store.clear_lines(claim.id, worker=self.id)
            try:
                async for number, raw in self._files.open_lines(
                    claim.owner,
                    claim.input_file_id,
                    max_line_bytes=self._settings.max_body_bytes,
                ):
                    request = check.add(number, raw)
                    # Once a line is bad the batch fails: the rest is only read for its problems.
                    if request is not None and not check.failed:
                        staged.append(request)
                    # Staging also renews the lease, so it goes on while only problems are read.
                    if number % STAGE_LINES == 0:
                        await self._stage(claim, staged)
            except LineTooLong as long:
                check.note(
                    BatchError(
                        code="line_too_long",
                        message=f"This line is over {long.limit} bytes, the limit of a request "
                        "body.",
                        line=long.number,
                    )
                )
            except ResourceNotFound:
                check.note(
                    BatchError(
                        code="invalid_request",
                        message=f"The input file {claim.input_file_id} no longer exists.",
                        param="input_file_id",
                    )
                )
            errors = check.finish()
            if errors:
                await self._store.fail(claim.id, errors, worker=self.id)
                logger.info("batch %s failed validation: %d problems", claim.id, len(errors))
                return
            await self._stage(claim, staged)
            started = await self._store.start(
                claim.id,
                worker=self.id,
                chunk_lines=self._settings.batch_chunk_lines,
                estimated_tokens=check.estimated_tokens,
                budget=self._settings.batch_token_budget,
            )
        except LeaseLost:
            # Cancelled meanwhile (its close is next, so the lease is given back), or taken over.
            await self._store.release_batch(claim.id, worker=self.id)
            logger.info("batch %s: validation stopped: cancelled, or taken over", claim.id)
            return
        logger.info(
            "batch %s %s: %d requests",
            claim.id,
            "in progress" if started else "failed: over the key's batch token budget",
            check.requests,
        )

    async def _stage(self, claim: Claim, staged: list[LineRequest]) -> None:
        await self._store.stage(claim.id, staged, worker=self.id, lease_s=self._lease_s)
        staged.clear()

    async def _run_chunk(self, chunk: Chunk) -> None:
        lines = asyncio.ensure_future(
            asyncio.gather(
                *(
                    self._answers.answer(ln.custom_id, ln.body, batch_id=chunk.batch_id)
                    for ln in chunk.lines
                )
            )
        )
        try:
            while not lines.done():
                await asyncio.wait({lines}, timeout=self._lease_s / 3)
                if not lines.done() and not await self._store.chunks.renew(
                    chunk, worker=self.id, lease_s=self._lease_s
                ):
                    logger.info("batch %s: chunk at line %d given up", *_where(chunk))
                    return
            await self._commit(chunk, lines.result())
        except asyncio.CancelledError:
            await self._give_back(chunk)
            raise
        except Exception:
            logger.exception("batch %s: chunk at line %d failed", *_where(chunk))
            await self._give_back(chunk)
        finally:
            lines.cancel()
            # Cancelled lines leave their CancelledError as the gather's exception: read it here,
            # or asyncio logs it as never retrieved.
            lines.add_done_callback(_retrieved)

    async def _give_back(self, chunk: Chunk) -> None:
        # Best effort: a chunk not given back is taken again once its lease runs out.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._store.chunks.release(chunk, worker=self.id))

    async def _commit(self, chunk: Chunk, answers: list[Answer]) -> None:
        results = [
            LineResult(line=line.line, ok=a.ok, record=a.record, tokens=a.tokens)
            for line, a in zip(chunk.lines, answers, strict=True)
        ]
        builds = {a.build for a in answers if a.build is not None}
        if len(builds) > 1:
            logger.info("batch %s: chunk at line %d came from two builds, again", *_where(chunk))
            await self._again(chunk)
            return
        build = next(iter(builds), None)
        commit = self._store.chunks.commit
        outcome, batch_build = await commit(chunk, results, build=build, worker=self.id)
        if outcome is Commit.OTHER_BUILD:
            assert build is not None and batch_build is not None
            if batch_build in self._builds.recent():
                logger.info("batch %s: chunk at line %d from another build, again", *_where(chunk))
                await self._again(chunk)
                return
            if await self._store.chunks.rebase(chunk.batch_id, old=batch_build, new=build):
                logger.warning(
                    "batch %s: build %s no longer answers; every chunk runs again on %s",
                    chunk.batch_id,
                    batch_build[:12],
                    build[:12],
                )
            outcome, _ = await commit(chunk, results, build=build, worker=self.id)
        if outcome is Commit.DONE:
            completed = sum(r.ok for r in results)
            self._metrics.batch_lines.labels("completed").inc(completed)
            self._metrics.batch_lines.labels("failed").inc(len(results) - completed)
        else:
            logger.info("batch %s: chunk at line %d not kept (%s)", *_where(chunk), outcome.value)

    async def _again(self, chunk: Chunk) -> None:
        """Give the chunk back after a pause, so that it does not run again at once."""
        await asyncio.sleep(min(POLL_S * 5, self._lease_s / 3))
        await self._store.chunks.release(chunk, worker=self.id)

    async def _close(self, claim: Claim) -> None:
        try:
            if claim.started:
                outputs, errors = await self._store.tally(claim.id)
                if outputs and claim.output_file_id is None:
                    await self._write(claim, output=True)
                if errors and claim.error_file_id is None:
                    await self._write(claim, output=False)
            status = await self._store.close(claim.id, worker=self.id)
        except LeaseLost:
            logger.info("batch %s: another worker took its close over", claim.id)
            return
        logger.info("batch %s %s", claim.id, status)

    async def _write(self, claim: Claim, *, output: bool) -> None:
        kind = "output" if output else "errors"
        file = await self._files.put(
            claim.owner,
            purpose="batch_output",
            filename=f"{claim.id}_{kind}.jsonl",
            chunks=self._lines(claim, output=output),
        )
        await self._store.keep_file(
            claim.id, output=output, file_id=file.id, worker=self.id, lease_s=self._lease_s
        )

    async def _lines(self, claim: Claim, *, output: bool) -> AsyncIterator[bytes]:
        """The file's lines in input order, a page at a time, renewing the lease as it goes."""
        code, message = EXPIRED if claim.closing == "expired" else CANCELLED
        after = 0
        while page := await self._store.records(
            claim.id, output=output, after=after, limit=RECORD_PAGE
        ):
            yield b"".join(
                (record or unsent_record(custom_id, code=code, message=message)) + b"\n"
                for _, custom_id, record in page
            )
            after = page[-1][0]
            await self._store.renew_batch(claim.id, worker=self.id, lease_s=self._lease_s)


def _where(chunk: Chunk) -> tuple[str, int]:
    return chunk.batch_id, chunk.first_line


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
