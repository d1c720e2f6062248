"""Admission control: the measured rate, the wait estimate, 429 with Retry-After, fair share."""

from __future__ import annotations

import pytest
from gateway_fakes import FakeClock

from gateway.admission import (
    MIN_ANSWERS,
    PRIOR_TOKENS_PER_S,
    Admission,
    Estimate,
    text_cost,
)
from gateway.errors import Overloaded


def measured(rate: float) -> tuple[Admission, FakeClock]:
    """An admission that saw Triton finish `rate` tokens per busy second."""
    clock = FakeClock()
    admission = Admission(admit_fraction=0.8, fair_fraction=0.5, clock=clock)
    for _ in range(MIN_ANSWERS):
        ticket = admission.admit(b"warm-up", cost=rate, deadline_s=30)
        clock.now += 1.0
        ticket.release(done=True)
    assert admission.rate == pytest.approx(rate)
    clock.now += 60.0  # idle: the warm-up caller is forgotten, the rate stands
    return admission, clock


def test_nothing_measured_yet_means_the_prior_rate():
    assert Admission(admit_fraction=0.8, fair_fraction=0.5).rate == PRIOR_TOKENS_PER_S


def test_the_rate_is_measured_from_the_start_once_enough_answers_came():
    clock = FakeClock()
    admission = Admission(admit_fraction=0.8, fair_fraction=0.5, clock=clock)
    for answered in range(1, MIN_ANSWERS + 1):
        ticket = admission.admit(b"k", cost=300, deadline_s=5)
        clock.now += 2.0
        ticket.release(done=True)
        expected = 150.0 if answered == MIN_ANSWERS else PRIOR_TOKENS_PER_S
        assert admission.rate == pytest.approx(expected)


def test_the_rate_is_tokens_done_per_busy_second():
    admission, clock = measured(100.0)
    ticket = admission.admit(b"k", cost=50, deadline_s=30)
    clock.now += 0.5
    ticket.release(done=True)
    assert admission.rate == pytest.approx(100.0)


def test_work_that_was_not_done_counts_its_time_but_not_its_tokens():
    admission, clock = measured(100.0)
    failed = admission.admit(b"k", cost=1000, deadline_s=30)
    clock.now += 0.1
    failed.release(done=False)
    done = admission.admit(b"k", cost=100, deadline_s=30)
    clock.now += 1.0
    done.release(done=True)
    assert admission.rate == pytest.approx(100 / 1.1)
    assert admission.in_flight == 0


def test_a_request_that_fits_its_deadline_is_admitted():
    admission, _ = measured(100.0)
    admission.admit(b"k", cost=300, deadline_s=5)  # 3 s of work against 0.8 x 5 s
    assert admission.in_flight == 300
    assert admission.wait_s() == pytest.approx(3.0)


def test_a_request_that_would_miss_its_deadline_is_429_with_the_seconds_until_it_fits():
    admission, _ = measured(100.0)
    admission.admit(b"a", cost=390, deadline_s=5)
    with pytest.raises(Overloaded) as refused:
        admission.admit(b"b", cost=150, deadline_s=5)  # 5.4 s of work against 0.8 x 5 s
    assert (refused.value.status, refused.value.retry_after) == (429, 2)
    assert refused.value.headers() == {"Retry-After": "2"}
    assert admission.in_flight == 390


@pytest.mark.parametrize(("wait_s", "retry_after"), [(4.01, 1), (4.5, 1), (13.2, 10), (900, 120)])
def test_retry_after_is_whole_seconds_from_1_to_120(wait_s, retry_after):
    assert Estimate(wait_s=wait_s, limit_s=4.0, over_share=False).retry_after_s == retry_after


def test_a_caller_over_its_share_is_refused_first_and_a_light_caller_is_served():
    admission, _ = measured(100.0)
    light = admission.admit(b"light", cost=10, deadline_s=5)
    light.release(done=True)  # the light caller has nothing in flight now, but it was seen
    admission.admit(b"heavy", cost=300, deadline_s=5)
    with pytest.raises(Overloaded) as refused:
        admission.admit(b"heavy", cost=100, deadline_s=5)  # 4 s > 0.5 x 5 s for its share
    assert refused.value.over_share
    admission.admit(b"light", cost=10, deadline_s=5)  # 3.1 s < 0.8 x 5 s
    assert admission.in_flight == 310


def test_a_lone_caller_is_never_over_its_share():
    admission, _ = measured(100.0)
    admission.admit(b"only", cost=300, deadline_s=5)
    admission.admit(b"only", cost=50, deadline_s=5)  # 3.5 s: above 2.5, below 4
    assert admission.in_flight == 350


def test_a_ticket_releases_its_work_once():
    admission, _ = measured(100.0)
    ticket = admission.admit(b"k", cost=40, deadline_s=5)
    ticket.release(done=False)
    ticket.release(done=False)
    assert admission.in_flight == 0


def test_answered_within_tells_whether_work_was_answered_lately():
    admission, clock = measured(100.0)
    assert not admission.answered_within(2.0)
    admission.admit(b"k", cost=1, deadline_s=5).release(done=True)
    assert admission.answered_within(2.0)
    clock.now += 3.0
    assert not admission.answered_within(2.0)


@pytest.mark.parametrize(("text", "cost"), [("", 2), ("abcd" * 10, 12), ("x" * 10_000, 256)])
def test_a_text_costs_a_token_per_4_characters_plus_2_capped_at_the_limit(text, cost):
    assert text_cost(text, max_tokens=256) == cost


def test_an_idle_server_admits_even_a_request_longer_than_the_limit():
    admission, _ = measured(100.0)
    admission.admit(b"k", cost=1000, deadline_s=5)  # 10 s of work, nothing ahead of it
    assert admission.in_flight == 1000


def test_each_refusal_is_told_a_later_time_than_the_one_before():
    admission, clock = measured(100.0)
    admission.admit(b"a", cost=390, deadline_s=5)
    told = []
    for _ in range(3):
        with pytest.raises(Overloaded) as refused:
            admission.admit(b"a", cost=100, deadline_s=5)
        told.append(refused.value.retry_after)
    assert told == [1, 2, 3]  # 1 s of work each: they come back one after another
    clock.now += 1.5  # the first one's time has come: it no longer holds the others back
    with pytest.raises(Overloaded) as refused:
        admission.admit(b"a", cost=100, deadline_s=5)
    assert refused.value.retry_after == 3
