"""Per-key budgets of requests and tokens per minute, and what a storage of them must do."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import RateLimited

# Float rounding of `elapsed * rate` can leave a refilled unit at 0.9999999; this much is
# forgiven so a client that waited exactly the Retry-After it was told is admitted.
_EPSILON = 1e-9
# A request is admitted while every budget holds one whole unit.
_WHOLE_UNIT = 1.0 - _EPSILON


@dataclass(frozen=True)
class Budget:
    """A token bucket: `per_minute` units, refilled continuously at `per_minute / 60` a second.

    `name` is the one of the `x-ratelimit-*` headers, and the field a storage keeps it under.
    """

    name: str
    per_minute: int

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0


# A budget and the amount to take from it.
Cost = tuple[Budget, int]


@dataclass(frozen=True)
class Spent:
    """What a storage did: `taken` False when a budget was under the floor and nothing was taken;
    each budget's level after, in the order of the costs."""

    taken: bool
    levels: tuple[float, ...]


class StorageUnavailable(Exception):
    """The storage did not answer; the limiter admits the request unchecked."""


class Storage(Protocol):
    """Where the levels live: this replica's memory, or a store every replica shares."""

    @property
    def up(self) -> bool:
        """False while the storage does not answer (exported as a metric)."""

    async def spend(self, key: bytes, costs: Sequence[Cost], *, floor: float | None) -> Spent:
        """Refill the key's budgets (a key never seen holds full ones), then take each cost's
        amount, levels going below zero if need be: from all of them, or from none when one is
        under `floor` (None: no floor). Atomic per key; StorageUnavailable if it cannot answer."""

    async def close(self) -> None: ...


class RateLimiter:
    """Requests per minute, checked before the body is read, and tokens per minute, charged after.

    A limit of 0 is off. Usage:
    `headers = await limiter.admit(key)` before the work (raises RateLimited), then
    `headers = await limiter.charge(key, tokens=usage_total_tokens)` for the answer.
    While the storage does not answer, requests are admitted and answered without headers.
    """

    def __init__(
        self, *, requests_per_minute: int, tokens_per_minute: int, storage: Storage
    ) -> None:
        self.storage = storage
        self.budgets = tuple(
            Budget(name, limit)
            for name, limit in (("requests", requests_per_minute), ("tokens", tokens_per_minute))
            if limit
        )

    async def admit(self, key: bytes) -> dict[str, str]:
        """Count one request for `key`, or raise RateLimited if either budget is spent."""
        spent = await self._spend(key, requests=1, tokens=0, floor=_WHOLE_UNIT)
        if spent is None:
            return {}
        if not spent.taken:
            waits = {
                budget.name: (1.0 - level) / budget.rate
                for budget, level in zip(self.budgets, spent.levels, strict=True)
            }
            name = max(waits, key=waits.__getitem__)
            # Whole seconds, rounded up, so a client that waits exactly this long is admitted.
            retry_after = max(1, math.ceil(waits[name]))
            raise RateLimited(
                f"rate limit reached for {name} per minute on this API key; "
                f"retry after {retry_after} s",
                retry_after=retry_after,
                extra_headers=self._headers(spent.levels),
            )
        return self._headers(spent.levels)

    async def charge(self, key: bytes, *, tokens: int) -> dict[str, str]:
        """Charge the tokens an answer really cost; an overdraft refuses the next request."""
        # No floor: the level may go below zero, and the debt is what refuses the key's next
        # requests until it is refilled.
        spent = await self._spend(key, requests=0, tokens=tokens, floor=None)
        return {} if spent is None else self._headers(spent.levels)

    async def close(self) -> None:
        await self.storage.close()

    async def _spend(
        self, key: bytes, *, requests: int, tokens: int, floor: float | None
    ) -> Spent | None:
        """None when no limit is on, or when the storage did not answer (fail open: a store
        that is down must not take the API down with it; it logs and counts that)."""
        if not self.budgets:
            return None
        amounts = {"requests": requests, "tokens": tokens}
        costs = [(budget, amounts[budget.name]) for budget in self.budgets]
        try:
            return await self.storage.spend(key, costs, floor=floor)
        except StorageUnavailable:
            return None

    def _headers(self, levels: Sequence[float]) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for each limit that is on."""
        headers = {}
        for budget, level in zip(self.budgets, levels, strict=True):
            headers[f"x-ratelimit-limit-{budget.name}"] = str(budget.per_minute)
            headers[f"x-ratelimit-remaining-{budget.name}"] = str(
                max(0, math.floor(level + _EPSILON))
            )
        return headers
