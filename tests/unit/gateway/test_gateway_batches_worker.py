from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field

import numpy as np
import orjson
from batch_harness import OWNER, request, running, texts
from gateway_fakes import FACTS, FakeClock, FakeEmbedder, fake_tokens, fake_vector, serve

from gateway.batches.objects import CreateBatch, OutputLine
from gateway.batches.validation import check_line
from gateway.errors import BackendBusy
from model_repository import wire


@dataclass
class GatedEmbedder(FakeEmbedder):
    """Never answers a request holding one of `blocked`; answers `BackendBusy` `busy` times."""

    blocked: set[str] = field(default_factory=set)
    busy: int = 0

    async def embed_texts(self, texts, options):
        if self.blocked & set(texts):
            await asyncio.Event().wait()
        if self.busy:
            self.busy -= 1
            raise BackendBusy("queue full")
        return await super().embed_texts(texts, options)


def realtime(body: dict) -> tuple[int, dict]:
    """What POST /v1/embeddings answers `body`, as a status and a JSON body."""
    with serve() as (client, _):
        response = client.post("/v1/embeddings", json=body)
    return response.status_code, response.json()


def by_custom_id(lines: list[dict]) -> dict[str, dict]:
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a custom_id written twice"
    return {line["custom_id"]: line for line in lines}


def test_a_batch_completes_with_the_realtime_answer_of_every_line(tmp_path, database) -> None:
    too_many = texts("too-many", *[f"t{i}" for i in range(65)])
    bad_dimensions = texts("bad-dimensions", "x", dimensions=0)
    expected = {
        "too-many": realtime(too_many["body"]),
        "bad-dimensions": realtime(bad_dimensions["body"]),
    }
    good = [texts(f"ok-{i}", f"text {i}", f"more text {i}") for i in range(5)]

    async def scenario():
        async with running(tmp_path, database=database) as harness:
            batch_id = await harness.submit([good[0], too_many, *good[1:], bad_dimensions])
            batch = await harness.ended(batch_id)
            return (
                batch,
                await harness.lines(batch.output_file_id),
                await harness.lines(batch.error_file_id),
            )

    batch, outputs, errors = asyncio.run(scenario())
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 7, "completed": 5, "failed": 2}
    assert [line["custom_id"] for line in outputs] == [f"ok-{i}" for i in range(5)]
    tokens = 0
    for i, line in enumerate(outputs):
        OutputLine.model_validate(line)
        assert line["response"]["status_code"] == 200 and line["error"] is None
        body = line["response"]["body"]
        for text, item in zip((f"text {i}", f"more text {i}"), body["data"], strict=True):
            assert np.allclose(item["embedding"], fake_vector(text), atol=1e-6)
            tokens += fake_tokens(text)
        assert body["model"] == FACTS.served_model_name
    assert batch.usage.input_tokens == batch.usage.total_tokens == tokens
    assert batch.usage.output_tokens == 0
    refused = by_custom_id(errors)
    assert set(refused) == set(expected)
    for custom_id, (status, body) in expected.items():
        OutputLine.model_validate(refused[custom_id])
        assert refused[custom_id]["response"]["status_code"] == status == 400
        assert refused[custom_id]["response"]["body"] == body


def test_a_line_refused_for_load_waits_and_completes(tmp_path) -> None:
    async def scenario():
        async with running(tmp_path, GatedEmbedder(busy=2)) as harness:
            batch_id = await harness.submit([texts("a", "one"), texts("b", "two")])
            batch = await harness.ended(batch_id)
            return batch, harness.metrics.render().decode()

    batch, exposition = asyncio.run(scenario())
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 2, "completed": 2, "failed": 0}
    assert batch.error_file_id is None
    assert 'epithre_rejected_requests_total{reason="backend_busy"} 2.0' in exposition


def test_a_file_with_bad_lines_fails_validation_naming_each(tmp_path) -> None:
    async def scenario():
        async with running(tmp_path) as harness:
            lines = [texts("a", "x"), b"{not json", texts("a", "y"), texts("b", "z")]
            return await harness.ended(await harness.submit(lines))

    batch = asyncio.run(scenario())
    assert batch.status == "failed" and batch.failed_at is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
    ]
    assert batch.output_file_id is None and batch.request_counts.total == 0


def test_a_line_longer_than_a_request_body_fails_validation(tmp_path) -> None:
    async def scenario():
        async with running(tmp_path, max_body_bytes=200) as harness:
            lines = [texts("a", "x"), texts("b", "y" * 300)]
            return await harness.ended(await harness.submit(lines))

    batch = asyncio.run(scenario())
    [error] = batch.errors.data
    assert (batch.status, error.code, error.line) == ("failed", "line_too_long", 2)


def test_cancel_keeps_the_lines_done_and_cancels_the_rest(tmp_path) -> None:
    lines = [texts(f"id-{i}", f"text {i}") for i in range(1, 9)]

    async def scenario():
        async with running(tmp_path, GatedEmbedder(blocked={"text 3"})) as harness:
            batch_id = await harness.submit(lines)
            await harness.reached(batch_id, 6)  # all but the chunk of lines 3-4
            cancelling = await harness.store.cancel(OWNER, batch_id)
            batch = await harness.ended(batch_id)
            outputs = await harness.lines(batch.output_file_id)
            return cancelling, batch, outputs, await harness.lines(batch.error_file_id)

    cancelling, batch, outputs, errors = asyncio.run(scenario())
    assert cancelling.status == "cancelling"
    assert (batch.status, batch.cancelled_at is not None) == ("cancelled", True)
    assert batch.request_counts.model_dump() == {"total": 8, "completed": 6, "failed": 2}
    assert sorted(by_custom_id(outputs)) == [f"id-{i}" for i in (1, 2, 5, 6, 7, 8)]
    unsent = by_custom_id(errors)
    assert sorted(unsent) == ["id-3", "id-4"]
    for line in unsent.values():
        OutputLine.model_validate(line)
        assert line["response"] is None and line["error"]["code"] == "batch_cancelled"


def test_a_chunk_given_up_on_cancel_leaves_no_error_for_asyncio_to_log(tmp_path) -> None:
    logged: list[str] = []

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: logged.append(context["message"]))
        async with running(tmp_path, GatedEmbedder(blocked={"text 3"})) as harness:
            batch_id = await harness.submit([texts(f"id-{i}", f"text {i}") for i in range(1, 5)])
            await harness.reached(batch_id, 2)
            await harness.store.cancel(OWNER, batch_id)
            await harness.ended(batch_id)
        gc.collect()  # an unretrieved exception is logged when its future is collected

    asyncio.run(scenario())
    assert logged == []


def test_lines_not_done_in_the_completion_window_expire(tmp_path) -> None:
    lines = [texts(f"id-{i}", f"text {i}") for i in range(1, 5)]

    async def scenario():
        embedder = GatedEmbedder(blocked={"text 4"})
        async with running(tmp_path, embedder, batch_completion_window_s=1.0) as harness:
            batch = await harness.ended(await harness.submit(lines))
            outputs = await harness.lines(batch.output_file_id)
            return batch, outputs, await harness.lines(batch.error_file_id)

    batch, outputs, errors = asyncio.run(scenario())
    assert (batch.status, batch.expired_at is not None) == ("expired", True)
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    assert sorted(by_custom_id(outputs)) == ["id-1", "id-2"]
    assert {line["custom_id"]: line["error"]["code"] for line in errors} == {
        "id-3": "batch_expired",
        "id-4": "batch_expired",
    }


def test_a_chunk_left_running_by_a_dead_worker_is_done_once(tmp_path, database) -> None:
    lines = [texts(f"id-{i}", f"text {i}") for i in range(1, 7)]

    async def scenario():
        async with running(tmp_path, start=False, database=database) as harness:
            store = harness.store
            created = await store.create(
                OWNER,
                CreateBatch(input_file_id="f", endpoint="/v1/embeddings", completion_window="24h"),
                model="epithre-embed",
                window_s=60,
            )
            # A worker validated the batch, took its first chunk, and died.
            await store.claim_batch(worker="dead", lease_s=0.6)
            checked = [
                check_line(n, orjson.dumps(ln), max_tokens=256) for n, ln in enumerate(lines, 1)
            ]
            await store.stage(created.id, checked, worker="dead", lease_s=0.6)
            await store.start(
                created.id, worker="dead", chunk_lines=2, estimated_tokens=0, budget=0
            )
            await store.chunks.claim(worker="dead", lease_s=0.6)
            harness.worker.start()
            batch = await harness.ended(created.id)
            return batch, await harness.lines(batch.output_file_id)

    batch, outputs = asyncio.run(scenario())
    assert batch.status == "completed"
    assert sorted(by_custom_id(outputs)) == [f"id-{i}" for i in range(1, 7)]


def test_a_batch_keeps_one_build_and_is_rebased_once_its_build_is_gone(tmp_path) -> None:
    old, new = "a" * 64, FACTS.fingerprint
    lines = [texts(f"id-{i}", f"text {i}") for i in range(1, 5)]
    clock = FakeClock()

    async def scenario():
        # Lines 1 and 2 (one chunk) come from the old build, the rest from the new one.
        embedder = GatedEmbedder(builds=[old, old])
        async with running(tmp_path, embedder, clock=clock, batch_max_in_flight=1) as harness:
            batch_id = await harness.submit(lines)
            await harness.reached(batch_id, 2)
            await asyncio.sleep(0.5)  # the new build's chunk is refused while the old answers
            held = await harness.store.get(OWNER, batch_id)
            clock.now += 61  # the old build has not answered for a minute: the upgrade is over
            batch = await harness.ended(batch_id)
            return held, batch, await harness.lines(batch.output_file_id)

    held, batch, outputs = asyncio.run(scenario())
    assert (held.status, held.request_counts.completed) == ("in_progress", 2)
    assert batch.status == "completed" and batch.request_counts.completed == 4
    for i, line in enumerate(outputs, 1):
        vector = line["response"]["body"]["data"][0]["embedding"]
        assert np.allclose(vector, fake_vector(f"text {i}", build=new), atol=1e-6)


def test_metrics_count_lines_done_batches_by_status_and_the_backlog(tmp_path) -> None:
    async def scenario():
        async with running(tmp_path) as harness:
            await harness.ended(
                await harness.submit([texts("a", "x"), texts("b", "y", dimensions=0)])
            )
            await asyncio.sleep(1.2)  # the next report
            return harness.metrics.render().decode()

    exposition = asyncio.run(scenario())
    assert 'epithre_batch_lines_total{outcome="completed"} 1.0' in exposition
    assert 'epithre_batch_lines_total{outcome="failed"} 1.0' in exposition
    assert 'epithre_batches{status="completed"} 1.0' in exposition
    assert 'epithre_batches{status="in_progress"} 0.0' in exposition
    assert "epithre_batch_backlog_lines 0.0" in exposition


def test_each_line_body_is_parsed_by_the_realtime_validation(tmp_path) -> None:
    body = {"model": "another-model", "input": "x"}

    async def scenario():
        async with running(tmp_path) as harness:
            batch = await harness.ended(await harness.submit([request("a", body)]))
            return batch, await harness.lines(batch.error_file_id)

    status, expected = realtime(body)
    batch, [line] = asyncio.run(scenario())
    assert batch.status == "completed" and batch.output_file_id is None
    assert (line["response"]["status_code"], line["response"]["body"]) == (status, expected)
    assert expected["error"]["code"] == "model_not_found"


def test_a_worker_that_stops_gives_its_chunks_back_at_once(tmp_path) -> None:
    lines = [texts(f"id-{i}", f"text {i}") for i in range(1, 3)]

    async def scenario():
        embedder = GatedEmbedder(blocked={"text 1"})
        async with running(tmp_path, embedder, batch_lease_s=600) as harness:
            batch_id = await harness.submit(lines)
            async with asyncio.timeout(5):
                while (await harness.store.get(OWNER, batch_id)).status != "in_progress":
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # the worker holds the chunk, its line waiting
            await harness.worker.stop()
            return await harness.store.chunks.claim(worker="next", lease_s=600)

    chunk = asyncio.run(scenario())
    assert chunk is not None and chunk.attempt == 2


def test_batch_lines_reach_the_towers_at_batch_priority(tmp_path) -> None:
    async def scenario():
        async with running(tmp_path) as harness:
            await harness.ended(await harness.submit([texts("a", "one"), texts("b", "two")]))
            return harness.embedder.calls

    calls = asyncio.run(scenario())
    assert [call["priority"] for call in calls] == [wire.PRIORITY_BATCH] * 2
