"""Queued mode's retry schedule (handler.requeue): back-off, alignment, Retry-After, cap, expiry."""

from __future__ import annotations

import pytest

from handler import requeue

QUARTER_HOUR = 900
T0 = 1_764_633_600.0  # 2025-12-02T00:00:00Z, a multiple of every step


@pytest.mark.parametrize(("attempt", "step"), [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480)])
def test_the_step_doubles_with_each_failed_try_and_the_delay_is_half_to_one_and_a_half_steps(attempt, step):
    for offset in range(0, 2 * step, 7):
        delay = requeue.delay_for(attempt, at=T0 + offset + 0.25)
        assert step / 2 <= delay <= 1.5 * step
        assert (T0 + offset + 0.25 + delay) % step < 1  # lands on the step's grid (rounded up)


def test_events_that_failed_at_different_moments_come_back_together():
    # Two backlogs in the capped phase, failed 7 and 11 minutes after a quarter hour: both come
    # back at the next quarter hour, so one consumer batch (one SMC call per target) takes both.
    first = T0 + 7 * 60 + requeue.delay_for(9, at=T0 + 7 * 60)
    second = T0 + 11 * 60 + requeue.delay_for(9, at=T0 + 11 * 60)
    assert first == second == T0 + QUARTER_HOUR


def test_the_delay_is_capped_at_sqs_longest_message_delay():
    for attempt in (6, 7, 50, 10_000):
        assert 0 < requeue.delay_for(attempt, at=T0 + 1.5) <= requeue.MAX_DELAY_S
    assert requeue.delay_for(1, retry_after=3600, at=T0) == QUARTER_HOUR


def test_the_delay_is_never_shorter_than_smc_retry_after():
    assert requeue.delay_for(1, retry_after=120, at=T0) == 120
    assert requeue.delay_for(1, retry_after=120.2, at=T0) == 121  # whole seconds, rounded up


def test_events_expire_when_their_next_try_would_be_past_the_max_age():
    day = 86400
    assert not requeue.expired(first_seen=0, delay_s=900, max_age_s=4 * day, at=4 * day - 900)
    assert requeue.expired(first_seen=0, delay_s=900, max_age_s=4 * day, at=4 * day - 899)


AGES = [(4 * 86400, "4 days"), (86400, "1 day"), (7200, "2 hours"), (900, "15 minutes"), (5, "5 seconds")]


@pytest.mark.parametrize(("seconds", "text"), AGES)
def test_ages_in_dead_letter_reasons_read_as_people_say_them(seconds, text):
    assert requeue.describe_age(seconds) == text
