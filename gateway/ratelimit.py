"""Per-key budgets of requests and tokens per minute, held in this replica's memory."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import RateLimited

Clock = Callable[[], float]
# Float rounding of `elapsed * rate` can leave a refilled unit at 0.9999999; this much is
# forgiven so a client that waited exactly the Retry-After it was told is admitted.
_EPSILON = 1e-9


@dataclass
class _Bucket:
    level: float
    updated: float


class Budget:
    """A token bucket per key: `per_minute` units, refilled continuously at `per_minute / 60`/s.

    Usage: `budget = Budget(60, clock=time.monotonic); budget.take(key, 1)`
    """

    def __init__(self, per_minute: int, *, clock: Clock) -> None:
        self.limit = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        # Keys are digests of configured keys (or the one anonymous key), so this cannot grow
        # with traffic: unauthenticated requests are refused before they reach a budget.
        self._buckets: dict[bytes, _Bucket] = {}

    def _refilled(self, key: bytes) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(level=self.limit, updated=now))
        bucket.level = min(self.limit, bucket.level + (now - bucket.updated) * self._rate)
        bucket.updated = now
        return bucket

    def wait_s(self, key: bytes) -> float:
        """Seconds until the key has one whole unit again; 0 when it has one now."""
        shortfall = 1.0 - self._refilled(key).level
        return shortfall / self._rate if shortfall > _EPSILON else 0.0

    def take(self, key: bytes, amount: int) -> None:
        # The level may go below zero: tokens are charged after the answer, and the debt is
        # what refuses the key's next requests until it is refilled.
        self._refilled(key).level -= amount

    def remaining(self, key: bytes) -> int:
        return max(0, math.floor(self._refilled(key).level + _EPSILON))


class RateLimiter:
    """Requests per minute, checked before the body is read, and tokens per minute, charged after.

    A limit of 0 is off. Usage:
    `headers = limiter.admit(key)` before the work (raises RateLimited), then
    `headers = limiter.charge(key, tokens=usage_total_tokens)` for the answer.
    """

    def __init__(
        self, *, requests_per_minute: int, tokens_per_minute: int, clock: Clock = time.monotonic
    ) -> None:
        self.requests = Budget(requests_per_minute, clock=clock) if requests_per_minute else None
        self.tokens = Budget(tokens_per_minute, clock=clock) if tokens_per_minute else None

    def admit(self, key: bytes) -> dict[str, str]:
        """Count one request for `key`, or raise RateLimited if either budget is spent."""
        waits = {
            name: budget.wait_s(key)
            for name, budget in (("requests", self.requests), ("tokens", self.tokens))
            if budget is not None
        }
        if waits and max(waits.values()) > 0:
            name = max(waits, key=waits.__getitem__)
            # Whole seconds, rounded up, so a client that waits exactly this long is admitted.
            retry_after = max(1, math.ceil(waits[name]))
            raise RateLimited(
                f"rate limit reached for {name} per minute on this API key; "
                f"retry after {retry_after} s",
                retry_after=retry_after,
                extra_headers=self.headers(key),
            )
        if self.requests is not None:
            self.requests.take(key, 1)
        return self.headers(key)

    def charge(self, key: bytes, *, tokens: int) -> dict[str, str]:
        """Charge the tokens an answer really cost; an overdraft refuses the next request."""
        if self.tokens is not None:
            self.tokens.take(key, tokens)
        return self.headers(key)

    def headers(self, key: bytes) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for each limit that is on."""
        headers = {}
        for name, budget in (("requests", self.requests), ("tokens", self.tokens)):
            if budget is not None:
                headers[f"x-ratelimit-limit-{name}"] = str(budget.limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(budget.remaining(key))
        return headers
