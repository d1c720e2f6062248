"""Budgets in this replica's memory: for one replica, and for unit tests with a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.ratelimit.limiter import Cost, Spent

Clock = Callable[[], float]


@dataclass
class _Levels:
    updated: float
    # Budget name -> units left; a budget not in it is full.
    levels: dict[str, float] = field(default_factory=dict)


class MemoryStorage:
    """With N replicas behind a balancer, a key may get up to N times its limit.

    Usage: `RateLimiter(requests_per_minute=60, tokens_per_minute=0,
    storage=MemoryStorage(clock=time.monotonic))`
    """

    up = True  # nothing to reach

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        # Keys are digests of configured keys (or the one anonymous key), so this cannot grow
        # with traffic: unauthenticated requests are refused before they reach a budget.
        self._keys: dict[bytes, _Levels] = {}

    async def spend(self, key: bytes, costs: Sequence[Cost], *, floor: float | None) -> Spent:
        now = self._clock()
        held = self._keys.setdefault(key, _Levels(updated=now))
        elapsed = now - held.updated
        levels = [
            min(b.per_minute, held.levels.get(b.name, b.per_minute) + elapsed * b.rate)
            for b, _ in costs
        ]
        taken = floor is None or all(level >= floor for level in levels)
        if taken:
            levels = [level - amount for level, (_, amount) in zip(levels, costs, strict=True)]
        held.levels.update((b.name, level) for (b, _), level in zip(costs, levels, strict=True))
        held.updated = now
        return Spent(taken=taken, levels=tuple(levels))

    async def close(self) -> None:
        """Nothing to close: the levels go with the process."""
