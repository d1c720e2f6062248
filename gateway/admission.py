"""Admission control: refuse at once the work that could not finish within its deadline.

The gateway knows the work it has in flight, in estimated tokens, and measures how fast Triton
finishes work while it has some (tokens per busy second, over a sliding window). A request's
expected wait is the work ahead of it plus its own over that rate. It is admitted while the wait
fits its deadline; past that it gets 429 with the seconds until it would fit as `Retry-After`.
Fair share: once the wait passes `fair_fraction` of the deadline, a caller holding more than its
share of the work in flight (the total over the callers seen within the window, so that a light
caller between two requests still counts) is refused, so a light caller finds room below the
deadline.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import Overloaded

Clock = Callable[[], float]
# A rough token count from characters (the gateway never tokenizes); the same estimate is
# charged when the work is admitted and credited when it is done, so the rate is in its unit.
CHARS_PER_TOKEN = 4
SPECIAL_TOKENS = 2
# An image costs about what a text of this many tokens costs (make bench: ~100 images/s against
# ~60 texts/s of ~117 tokens on 2 cores).
IMAGE_TOKENS = 64
# Before the first answer, Triton is assumed about as fast as two CPU cores are on this model
# (make bench: ~60 texts/s of ~80 estimated tokens) until MIN_ANSWERS answers measure it.
PRIOR_TOKENS_PER_S = 10_000.0
# A measurement needs this much busy time since its baseline, and the first one this many
# answers: the first answers come while other work is half done, which reads as a low rate.
MIN_BUSY_S = 0.25
MIN_ANSWERS = 4
RETRY_AFTER_S = (1, 120)


def text_cost(text: str, *, max_tokens: int) -> float:
    return min(max_tokens, len(text) // CHARS_PER_TOKEN + SPECIAL_TOKENS)


@dataclass(frozen=True)
class Estimate:
    """What admission saw when it decided."""

    wait_s: float
    limit_s: float  # the wait allowed to this caller now
    over_share: bool  # the caller holds more than its share of the work in flight
    promised_s: float = 0.0  # the work of refused requests told to come back before this one

    @property
    def retry_after_s(self) -> int:
        """Seconds until the work ahead, and the refused work told to come back earlier, have
        drained enough for this request to fit."""
        low, high = RETRY_AFTER_S
        return max(low, min(high, math.ceil(self.wait_s + self.promised_s - self.limit_s)))


class Admission:
    """Work in flight per caller, the measured rate, and the decision for each request.

    Usage: `ticket = admission.admit(caller, cost=120.0, deadline_s=30)`, then `ticket.done()`
    """

    def __init__(
        self,
        *,
        admit_fraction: float,
        fair_fraction: float,
        window_s: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._admit_fraction = admit_fraction
        self._fair_fraction = fair_fraction
        self._window_s = window_s
        self._clock = clock
        self._by_caller: dict[bytes, float] = {}
        self._seen: dict[bytes, float] = {}  # caller -> when it last asked
        self.in_flight = 0.0
        self._rate = PRIOR_TOKENS_PER_S
        self._measured = False
        # Cumulative tokens done and busy seconds, sampled at each completion.
        self._done = 0.0
        self._busy = 0.0
        self._busy_since: float | None = None
        # (time, tokens done, busy seconds), the first one the start: nothing done yet.
        self._samples: deque[tuple[float, float, float]] = deque([(clock(), 0.0, 0.0)])
        self.last_done_at = -math.inf
        # (when, tokens) of refused requests told to retry then: the next refusal is told a
        # later time, so that retries come back spread out instead of all at once.
        self._promised: deque[tuple[float, float]] = deque()

    @property
    def rate(self) -> float:
        """Tokens per second Triton finished while it had work, over the last window."""
        return self._rate

    @property
    def busy(self) -> bool:
        """Whether admitted work is in flight."""
        return self.in_flight > 0

    def answered_within(self, seconds: float) -> bool:
        """Whether some admitted work was answered in the last `seconds`."""
        return self.last_done_at >= self._clock() - seconds

    def wait_s(self, cost: float = 0.0) -> float:
        return (self.in_flight + cost) / self._rate

    def estimate(self, caller: bytes, cost: float, deadline_s: float) -> Estimate:
        share = (self.in_flight + cost) / self._callers(caller)
        # A caller over its share is the first to wait when it is crowded.
        over_share = self._by_caller.get(caller, 0.0) + cost > share * (1 + 1e-9)
        fraction = self._fair_fraction if over_share else self._admit_fraction
        return Estimate(
            wait_s=self.wait_s(cost),
            limit_s=deadline_s * fraction,
            over_share=over_share,
            promised_s=self._promised_tokens() / self._rate,
        )

    def _promised_tokens(self) -> float:
        now = self._clock()
        while self._promised and self._promised[0][0] <= now:
            self._promised.popleft()
        return sum(tokens for _, tokens in self._promised)

    def retry_after(self, caller: bytes, *, cost: float, deadline_s: float) -> int:
        """Seconds a refused request should wait; the next refusal is told a later time."""
        retry_after = self.estimate(caller, cost, deadline_s).retry_after_s
        self._promised.append((self._clock() + retry_after, cost))
        return retry_after

    def _callers(self, caller: bytes) -> int:
        """Callers with work in flight or seen within the window, `caller` included."""
        now = self._clock()
        self._seen[caller] = now
        for seen, at in list(self._seen.items()):
            if at < now - self._window_s and seen not in self._by_caller:
                del self._seen[seen]
        return len(self._seen)

    def admit(self, caller: bytes, *, cost: float, deadline_s: float) -> Ticket:
        """Take the request on, or raise `Overloaded` with its Retry-After."""
        estimate = self.estimate(caller, cost, deadline_s)
        # With nothing in flight there is nothing to wait for: even a request longer than the
        # limit is the best use of an idle server.
        if self.in_flight > 0 and estimate.wait_s > estimate.limit_s:
            retry_after = self.retry_after(caller, cost=cost, deadline_s=deadline_s)
            raise Overloaded(
                "the model is busy: this request would not finish within its deadline; "
                f"retry in {retry_after} s",
                retry_after=retry_after,
                over_share=estimate.over_share,
            )
        now = self._clock()
        if self.in_flight == 0:
            self._busy_since = now
        self.in_flight += cost
        self._by_caller[caller] = self._by_caller.get(caller, 0.0) + cost
        return Ticket(self, caller, cost)

    def _release(self, caller: bytes, cost: float, *, done: bool) -> None:
        now = self._clock()
        left = self._by_caller[caller] - cost
        if left > 1e-9:
            self._by_caller[caller] = left
        else:
            del self._by_caller[caller]
        self.in_flight = max(0.0, self.in_flight - cost)
        busy = self._busy + (now - self._busy_since if self._busy_since is not None else 0.0)
        if self.in_flight == 0:
            self._busy, self._busy_since = busy, None
        if done:
            self._done += cost
            self.last_done_at = now
            self._measure(now, busy)

    def _measure(self, now: float, busy: float) -> None:
        self._samples.append((now, self._done, busy))
        # The oldest sample kept is the last one before the window: the baseline.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window_s:
            self._samples.popleft()
        _, done_then, busy_then = self._samples[0]
        enough = self._measured or len(self._samples) > MIN_ANSWERS
        if enough and busy - busy_then >= MIN_BUSY_S:
            self._rate = (self._done - done_then) / (busy - busy_then)
            self._measured = True


class Ticket:
    """One admitted request's share of the work in flight; release it exactly once."""

    def __init__(self, admission: Admission, caller: bytes, cost: float) -> None:
        self._admission = admission
        self._caller = caller
        self._cost = cost
        self._open = True

    def release(self, *, done: bool) -> None:
        """`done`: Triton finished the work (its time counts towards the rate)."""
        if self._open:
            self._open = False
            self._admission._release(self._caller, self._cost, done=done)
