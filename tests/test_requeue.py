"""Queued mode's retry schedule (handler.requeue): back-off, Retry-After, cap, expiry."""

from __future__ import annotations

import pytest

from handler import requeue


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 15, 30), (2, 30, 60), (3, 60, 120), (6, 450, 900)])
def test_the_delay_doubles_with_each_failed_try_with_jitter_in_its_upper_half(attempt, low, high):
    delays = {requeue.delay_for(attempt) for _ in range(200)}
    assert min(delays) >= low and max(delays) <= high
    assert len(delays) > 1  # jittered: a backlog does not come back in one wave


def test_the_delay_is_capped_at_sqs_longest_message_delay():
    assert {requeue.delay_for(attempt) for attempt in (7, 50, 10_000)} <= set(range(450, 901))
    assert requeue.delay_for(1, retry_after=3600) == 900


def test_the_delay_is_never_shorter_than_smc_retry_after():
    assert all(requeue.delay_for(1, retry_after=120) >= 120 for _ in range(50))
    assert requeue.delay_for(1, retry_after=120.2) == 121  # whole seconds, rounded up


def test_events_expire_when_their_next_try_would_be_past_the_max_age():
    day = 86400
    assert not requeue.expired(first_seen=0, delay_s=900, max_age_s=4 * day, at=4 * day - 900)
    assert requeue.expired(first_seen=0, delay_s=900, max_age_s=4 * day, at=4 * day - 899)


AGES = [(4 * 86400, "4 days"), (86400, "1 day"), (7200, "2 hours"), (900, "15 minutes"), (5, "5 seconds")]


@pytest.mark.parametrize(("seconds", "text"), AGES)
def test_ages_in_dead_letter_reasons_read_as_people_say_them(seconds, text):
    assert requeue.describe_age(seconds) == text
