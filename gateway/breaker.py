"""A circuit breaker in front of Triton: a stopped or vanished backend answers 503 at once.

After `threshold` consecutive transport failures or timeouts the circuit opens: requests get 503
with `Retry-After` without waiting on Triton, and a probe (one short embedding) runs every
`probe_interval_s` until one succeeds, which closes it. Overload (a full queue, a queue timeout)
is an answer, not a failure: it never opens the circuit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

from gateway.errors import BackendUnavailable

logger = logging.getLogger("gateway")


class CircuitBreaker:
    """Usage: `breaker.check()` before a call, then `breaker.succeeded()` or `breaker.failed()`."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        threshold: int,
        probe_interval_s: float,
        on_change: Callable[[bool], None] = lambda is_open: None,
    ) -> None:
        self._probe = probe
        self._threshold = threshold
        self._interval_s = probe_interval_s
        self._on_change = on_change
        self._failures = 0
        self._probing: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self._probing is not None

    def check(self) -> None:
        """Raise 503 with Retry-After while the circuit is open."""
        if self.is_open:
            raise BackendUnavailable(
                "the model backend is unavailable; retrying it",
                retry_after=max(1, math.ceil(self._interval_s)),
            )

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self, *, at_once: bool = False) -> None:
        """A transport failure or timeout; `at_once` (a failed readiness probe) opens it now."""
        self._failures = self._threshold if at_once else self._failures + 1
        if self._failures >= self._threshold and not self.is_open:
            logger.warning("circuit open: the model backend failed %d times", self._failures)
            self._probing = asyncio.get_running_loop().create_task(self._probe_until_closed())
            self._on_change(True)

    async def _probe_until_closed(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._probe()
            except Exception as exc:  # any failure: stay open and probe again
                logger.info("circuit stays open: %r", exc)
                continue
            logger.warning("circuit closed: the model backend answered a probe")
            self._failures, self._probing = 0, None
            self._on_change(False)
            return

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
