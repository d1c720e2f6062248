"""LineAnswers paces batch lines: all of `pace.alone` while no realtime request comes, one line at
a time while realtime requests do, and all again `pace.quiet_s` after the last one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
from gateway_fakes import FACTS, FakeClock, FakeEmbedder

from gateway.admission import Admission
from gateway.batches.answers import Answer, LineAnswers, Pace
from gateway.breaker import CircuitBreaker
from gateway.metrics import Metrics
from gateway.protocol import Limits
from gateway.service import EmbeddingService
from gateway.settings import Settings
from gateway.validation import parse_request, request_type
from model_repository import wire

PACE = Pace(alone=3, beside_realtime=1, quiet_s=10.0)
REQUEST_TYPE = request_type(Limits.of(Settings(), FACTS))


@dataclass
class HeldEmbedder(FakeEmbedder):
    """Holds every call until the test releases it; counts the batch calls held at once."""

    held: list[asyncio.Future[None]] = field(default_factory=list)
    batch_peak: int = 0

    @property
    def batch_in_flight(self) -> int:
        return sum(
            not gate.done() and call["priority"] == wire.PRIORITY_BATCH
            for gate, call in zip(self.held, self.calls, strict=True)
        )

    async def embed_texts(self, texts, options):
        gate = asyncio.get_running_loop().create_future()
        self.held.append(gate)
        answer = await super().embed_texts(texts, options)  # records the call
        self.batch_peak = max(self.batch_peak, self.batch_in_flight)
        await gate
        return answer

    async def release(self, count: int = 1) -> None:
        """Release the first `count` calls still held, and let the lines waiting go on."""
        for gate in [g for g in self.held if not g.done()][:count]:
            gate.set_result(None)
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def build(clock: FakeClock) -> tuple[HeldEmbedder, EmbeddingService, LineAnswers]:
    embedder = HeldEmbedder()
    service = EmbeddingService(
        embedder,
        text_parts=2,
        max_tokens=FACTS.max_tokens,
        deadline_s=30.0,
        admission=Admission(admit_fraction=0.8, fair_fraction=0.5, clock=clock),
        breaker=CircuitBreaker(embedder.probe, threshold=2, probe_interval_s=60),
        metrics=Metrics(),
        clock=clock,
    )
    answers = LineAnswers(
        service,
        request_type=REQUEST_TYPE,
        model=FACTS.served_model_name,
        pace=PACE,
    )
    return embedder, service, answers


def lines(answers: LineAnswers, count: int) -> list[asyncio.Task[Answer]]:
    body = {"model": FACTS.served_model_name, "input": ["kucing oren"]}
    return [
        asyncio.create_task(answers.answer(f"line-{i}", orjson.dumps(body))) for i in range(count)
    ]


def realtime(service: EmbeddingService) -> asyncio.Task:
    request = parse_request({"model": FACTS.served_model_name, "input": "hujan"}, REQUEST_TYPE)
    return asyncio.create_task(service.embed(request, caller=b"key"))


def test_lines_fill_max_in_flight_while_no_realtime_request_comes() -> None:
    async def scenario():
        embedder, service, answers = build(FakeClock())
        tasks = lines(answers, 5)
        await settle()
        held = embedder.batch_in_flight
        while not all(task.done() for task in tasks):
            await embedder.release()
        await service.breaker.close()
        return held, embedder.batch_peak, [task.result().ok for task in tasks]

    held, peak, ok = asyncio.run(scenario())
    assert (held, peak) == (PACE.alone, PACE.alone)
    assert ok == [True] * 5


def test_one_line_at_a_time_while_a_realtime_request_is_in_flight() -> None:
    async def scenario():
        embedder, service, answers = build(FakeClock())
        request = realtime(service)
        await settle()
        tasks = lines(answers, 4)
        held = []
        while not all(task.done() for task in tasks):
            await settle()
            held.append(embedder.batch_in_flight)
            await embedder.release()  # the realtime request first, then the lines in turn
        return held, request.done(), embedder.batch_peak

    held, realtime_done, peak = asyncio.run(scenario())
    assert realtime_done
    assert held == [1, 1, 1, 1, 1]
    assert peak == 1


def test_lines_take_the_model_back_quiet_seconds_after_the_last_realtime_request() -> None:
    async def scenario():
        clock = FakeClock()
        embedder, service, answers = build(clock)
        request = realtime(service)
        await settle()
        tasks = lines(answers, 6)
        await settle()
        seen = [embedder.batch_in_flight]
        await embedder.release()  # the realtime request: it ends now
        assert request.done()
        clock.now += PACE.quiet_s / 2
        await embedder.release()  # a line: the next one goes alone, realtime ended just now
        seen.append(embedder.batch_in_flight)
        clock.now += PACE.quiet_s
        await embedder.release()  # a line, once quiet: the rest go at once
        seen.append(embedder.batch_in_flight)
        while not all(task.done() for task in tasks):
            await embedder.release()
        return seen

    assert asyncio.run(scenario()) == [1, 1, PACE.alone]
