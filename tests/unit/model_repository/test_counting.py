"""A stub's counters, summed and sent by a thread of their own."""

from __future__ import annotations

import threading
import weakref

from counting import TOKEN_KINDS, DeferredCounters

KINDS = {kind: {"kind": kind} for kind in TOKEN_KINDS}


class FakeCounter:
    def __init__(self) -> None:
        self.increments: list[float] = []
        self.sent = threading.Event()

    def increment(self, value: float) -> None:
        self.increments.append(value)
        self.sent.set()


class FakeFamily:
    """Its counters by their "kind" label."""

    def __init__(self) -> None:
        self.counters: dict[str, FakeCounter] = {}

    def Metric(self, labels: dict[str, str]) -> FakeCounter:
        return self.counters.setdefault(labels["kind"], FakeCounter())


def test_counts_added_within_the_interval_go_in_one_increment_per_counter():
    family = FakeFamily()
    counters = DeferredCounters(family, KINDS, interval_s=60)
    counters.add(real=3, padding=5)
    counters.add(real=4, padding=0)
    counters.close()
    assert family.counters["real"].increments == [7]
    assert family.counters["padding"].increments == [5]


def test_a_count_of_zero_is_not_sent():
    family = FakeFamily()
    counters = DeferredCounters(family, KINDS, interval_s=60)
    counters.add(real=3, padding=0)
    counters.close()
    assert family.counters["padding"].increments == []


def test_a_quiet_stub_sends_its_counts_after_the_interval_without_closing():
    family = FakeFamily()
    counters = DeferredCounters(family, KINDS, interval_s=0.01)
    real = family.counters["real"]
    counters.add(real=2)
    assert real.sent.wait(10)
    real.sent.clear()
    counters.add(real=5)
    assert real.sent.wait(10)
    assert real.increments == [2, 5]
    counters.close()


def test_nothing_is_sent_before_anything_is_added():
    family = FakeFamily()
    DeferredCounters(family, KINDS, interval_s=0.001).close()
    assert [counter.increments for counter in family.counters.values()] == [[], []]


def test_closing_lets_go_of_the_family_and_its_counters_while_the_stub_still_runs():
    family = FakeFamily()
    counters = DeferredCounters(family, KINDS, interval_s=60)
    alive = [weakref.ref(family), *(weakref.ref(c) for c in family.counters.values())]
    del family
    assert all(ref() is not None for ref in alive)
    counters.close()
    assert [ref() for ref in alive] == [None, None, None]
