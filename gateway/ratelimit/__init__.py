"""Per-key rate limits: one `RateLimiter` (limiter.py) over a storage of the budgets, chosen by
EPITHRE_RATE_LIMIT_STORAGE: this replica's memory (memory.py) or Redis, shared by every replica
(redis_storage.py, which says why it is a script of ours and what happens when Redis is down).

Usage:
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=0,
                          storage=open_storage("redis://redis:6379/0", clock=time.monotonic))
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.ratelimit.limiter import RateLimiter, Storage
from gateway.ratelimit.memory import MemoryStorage
from gateway.settings import MEMORY

__all__ = ["MemoryStorage", "RateLimiter", "Storage", "open_storage"]


def open_storage(
    url: str, *, clock: Callable[[], float], on_error: Callable[[], None] = lambda: None
) -> Storage:
    """MEMORY, timed by `clock`; any other URL is a Redis one (Settings checked its scheme),
    timed by the server, `on_error` called on each call it fails."""
    if url == MEMORY:
        return MemoryStorage(clock=clock)
    # Imported only here: the Redis client takes a quarter of a second to import.
    from gateway.ratelimit.redis_storage import RedisStorage

    return RedisStorage(url, on_error=on_error)
