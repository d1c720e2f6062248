"""A stub's counters, summed and sent by a thread of their own."""

from __future__ import annotations

import threading

from counting import DeferredCounters


class FakeCounter:
    def __init__(self) -> None:
        self.increments: list[float] = []
        self.sent = threading.Event()

    def increment(self, value: float) -> None:
        self.increments.append(value)
        self.sent.set()


def test_counts_added_within_the_interval_go_in_one_increment_per_counter():
    real, padding = FakeCounter(), FakeCounter()
    counters = DeferredCounters({"real": real, "padding": padding}, interval_s=60)
    counters.add(real=3, padding=5)
    counters.add(real=4, padding=0)
    counters.close()
    assert real.increments == [7]
    assert padding.increments == [5]


def test_a_count_of_zero_is_not_sent():
    real, padding = FakeCounter(), FakeCounter()
    counters = DeferredCounters({"real": real, "padding": padding}, interval_s=60)
    counters.add(real=3, padding=0)
    counters.close()
    assert padding.increments == []


def test_a_quiet_stub_sends_its_counts_after_the_interval_without_closing():
    real = FakeCounter()
    counters = DeferredCounters({"real": real}, interval_s=0.01)
    counters.add(real=2)
    assert real.sent.wait(10)
    real.sent.clear()
    counters.add(real=5)
    assert real.sent.wait(10)
    assert real.increments == [2, 5]
    counters.close()


def test_nothing_is_sent_before_anything_is_added():
    real = FakeCounter()
    DeferredCounters({"real": real}, interval_s=0.001).close()
    assert real.increments == []
