"""Budgets in Redis, so that every gateway replica spends from one budget per key.

Why a Lua script of ours and not a library: our semantics charge tokens after the answer, with
the real count, and let the level go below zero so that the debt refuses the key's next request.
The libraries refuse a cost that does not fit and then record nothing: `limits` (`hit(cost)`, and
a cost above the limit is always refused), `throttled-py` (its token bucket refused a cost of 10
on a budget of 5 and left the budget untouched) and `pyrate-limiter` (a log of weighted items
that refuses an item whose weight does not fit). An after-the-fact charge would be lost, or
need a reserved upper bound that refuses requests the real count would have let through. So the
same token bucket as `MemoryStorage` runs in Redis as one script: atomic per key, one EVALSHA
per admit and per charge, timed by the server's clock (`TIME`), so the replicas' clocks do not
matter.

Redis unreachable: fail open. Each call is bounded by TIMEOUT_S; a failed one marks the storage
down (logged once, `epithre_rate_limit_storage_up` 0, `..._errors_total` counted) and requests
are admitted unchecked, without a call, until a retry every RETRY_S finds it answering again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.ratelimit.limiter import Cost, Spent, StorageUnavailable

logger = logging.getLogger("gateway")

# Redis answers a script in well under a millisecond; a request waits at most this long for it.
TIMEOUT_S = 0.25
# While Redis is down, one call tries it again this often; the others do not wait for it.
RETRY_S = 1.0
KEY_PREFIX = "epithre:ratelimit:"

# One API key's budgets in one hash: `updated` (the server's time of the last spend) and one
# level per budget; a missing hash or field is a full budget.
# ARGV: the floor ('' for none), then the name, limit per minute and amount of each budget.
# Returns 1 when the amounts were taken (0 when a budget was under the floor), then each level.
SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local floor = tonumber(ARGV[1])
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated')) or now
-- Never a negative refill, should the server's clock step back.
local elapsed = math.max(0, now - updated)
local budgets = {}
local taken = 1
for i = 2, #ARGV, 3 do
  local limit = tonumber(ARGV[i + 1])
  local rate = limit / 60
  local level = tonumber(redis.call('HGET', KEYS[1], ARGV[i])) or limit
  level = math.min(limit, level + elapsed * rate)
  if floor and level < floor then taken = 0 end
  budgets[#budgets + 1] = {ARGV[i], limit, rate, level, tonumber(ARGV[i + 2])}
end
local reply = {taken}
local full_in = 0
for _, budget in ipairs(budgets) do
  local name, limit, rate, level, amount = unpack(budget)
  if taken == 1 then level = level - amount end
  -- 17 digits: a level written and read back is the same double.
  local text = string.format('%.17g', level)
  redis.call('HSET', KEYS[1], name, text)
  reply[#reply + 1] = text
  full_in = math.max(full_in, (limit - level) / rate)
end
redis.call('HSET', KEYS[1], 'updated', string.format('%.17g', now))
-- A full budget is the same as none: the hash goes a second after all would be full again.
redis.call('PEXPIRE', KEYS[1], math.ceil(full_in * 1000) + 1000)
return reply
"""


def redacted(url: str) -> str:
    """The URL without its user and password, for logs."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


class RedisStorage:
    """Usage: `storage = RedisStorage("redis://redis:6379/0", on_error=counter.inc)`;
    `await storage.close()` at shutdown."""

    def __init__(
        self,
        url: str,
        *,
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = redacted(url)
        self._client = Redis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            # Once, at once: a connection a restarted Redis closed is opened again in the same
            # call. The default (10 tries with backoff) would hold requests for seconds.
            retry=Retry(NoBackoff(), retries=1),
        )
        # EVALSHA, and the script loaded again where the server lacks it (a restarted Redis).
        self._script = self._client.register_script(SCRIPT)
        self._on_error = on_error
        self._clock = clock
        self.up = True
        self._retry_at = 0.0
        logger.info("rate limits kept in %s, shared by every replica using it", self.address)

    async def spend(self, key: bytes, costs: Sequence[Cost], *, floor: float | None) -> Spent:
        if not self.up:
            now = self._clock()
            if now < self._retry_at:
                raise StorageUnavailable(f"{self.address} is down")
            # This call tries; those that come meanwhile go on unchecked instead of waiting too.
            self._retry_at = now + RETRY_S
        args: list[str | int] = ["" if floor is None else repr(floor)]
        for budget, amount in costs:
            args += [budget.name, budget.per_minute, amount]
        try:
            # The bound on the whole call, retry included: a stopped Redis never stalls a request.
            async with asyncio.timeout(TIMEOUT_S):
                reply = await self._script(keys=[KEY_PREFIX + key.hex()], args=args)
        except (RedisError, TimeoutError) as error:
            self._failed(error)
            raise StorageUnavailable(f"{self.address}: {error!r}") from error
        if not self.up:
            self.up = True
            logger.info("rate-limit storage %s answers again: limits hold", self.address)
        return Spent(taken=reply[0] == 1, levels=tuple(float(level) for level in reply[1:]))

    def _failed(self, error: Exception) -> None:
        self._on_error()
        if self.up:
            self.up = False
            self._retry_at = self._clock() + RETRY_S
            # asyncio's TimeoutError says nothing of itself.
            reason = f"no answer in {TIMEOUT_S} s" if type(error) is TimeoutError else repr(error)
            logger.warning(
                "rate-limit storage %s does not answer (%s): requests are admitted without "
                "rate limits until it does; tried again every %.0f s",
                self.address,
                reason,
                RETRY_S,
            )

    async def close(self) -> None:
        await self._client.aclose()
