"""`DeferredCounters`: a stub's Prometheus counters, added to off the request path.

Each `pb_utils` metric increment is a round trip from the stub to the server: 0.1 ms that a
request waited for, twice in a lone text's preprocessing. Counts are summed here and a thread of
the stub's own sends them, at most every `interval_s`: a quiet server shows every count within
that time, a busy one sends one increment per counter per interval.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

FLUSH_INTERVAL_S = 0.5
# The kinds of token positions that text_preprocess and the towers count: the texts' own tokens,
# and the padding up to the width they were computed at.
TOKEN_KINDS = ("real", "padding")


class Counter(Protocol):
    """What it needs of a `pb_utils.Metric` of a COUNTER family."""

    def increment(self, value: float) -> None: ...


class CounterFamily(Protocol):
    """What it needs of a `pb_utils.MetricFamily` of kind COUNTER."""

    def Metric(self, labels: dict[str, str]) -> Counter: ...


class DeferredCounters:
    """`counters.add(real=12, padding=4)`; `close()` sends what is left, stops the thread and lets
    go of the metrics.

    Usage: `DeferredCounters(pb_utils.MetricFamily(...), {"real": {"kind": "real"}, ...})`: a
    counter of the family for each name, with those labels.
    """

    def __init__(
        self,
        family: CounterFamily,
        labels: Mapping[str, Mapping[str, str]],
        *,
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        # The family must outlive its metrics, so it is kept with them.
        self._family = family
        self._counters = {name: family.Metric(labels=dict(each)) for name, each in labels.items()}
        self._interval_s = interval_s
        self._pending = dict.fromkeys(self._counters, 0)
        self._lock = threading.Lock()
        self._added = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._send_until_closed, daemon=True)
        self._thread.start()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                self._pending[name] += count
        self._added.set()

    def _send_until_closed(self) -> None:
        while True:
            self._added.wait()
            # Counts of the requests that follow within the interval go in the same increment.
            closed = self._closed.wait(self._interval_s)
            self._send()
            if closed:
                return

    def _send(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, dict.fromkeys(self._counters, 0)
            self._added.clear()
        for name, count in pending.items():
            if count:  # an increment of 0 would still be a round trip
                self._counters[name].increment(count)

    def close(self) -> None:
        self._closed.set()
        self._added.set()
        self._thread.join()
        # Freed now, while the stub still serves: freed with the model as the stub exits, a metric
        # family crashes it (triton-inference-server/server#8662).
        self._counters.clear()
        del self._family
