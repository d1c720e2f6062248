"""The circuit breaker: opens after consecutive failures, answers 503 at once, closes on a probe."""

from __future__ import annotations

import asyncio

import pytest

from gateway.breaker import CircuitBreaker
from gateway.errors import BackendUnavailable


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False

    async def __call__(self) -> None:
        self.calls += 1
        if not self.healthy:
            raise BackendUnavailable("still down")


def breaker(probe: Probe, changes: list[bool] | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        probe,
        threshold=2,
        probe_interval_s=0.01,
        on_change=(changes.append if changes is not None else lambda is_open: None),
    )


def test_one_failure_leaves_it_closed_and_a_success_resets_the_count():
    async def run() -> bool:
        circuit = breaker(Probe())
        circuit.failed()
        circuit.succeeded()
        circuit.failed()
        return circuit.is_open

    assert asyncio.run(run()) is False


def test_consecutive_failures_open_it_and_requests_get_503_with_retry_after():
    async def run() -> BackendUnavailable:
        circuit = breaker(Probe())
        circuit.failed()
        circuit.failed()
        try:
            with pytest.raises(BackendUnavailable) as refused:
                circuit.check()
            return refused.value
        finally:
            await circuit.close()

    refused = asyncio.run(run())
    assert (refused.status, refused.headers()) == (503, {"Retry-After": "1"})


def test_a_failed_readiness_probe_opens_it_at_once():
    async def run() -> bool:
        circuit = breaker(Probe())
        circuit.failed(at_once=True)
        is_open = circuit.is_open
        await circuit.close()
        return is_open

    assert asyncio.run(run()) is True


def test_it_probes_while_open_and_closes_on_the_first_success():
    probe, changes = Probe(), []

    async def run() -> None:
        circuit = breaker(probe, changes)
        circuit.failed(at_once=True)
        await asyncio.sleep(0.05)
        assert circuit.is_open and probe.calls >= 2
        probe.healthy = True
        await asyncio.sleep(0.05)
        assert not circuit.is_open
        circuit.check()

    asyncio.run(run())
    assert changes == [True, False]
