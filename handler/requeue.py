"""Queued mode's retry schedule: when events that failed retryably are tried again, and when they expire.

A message holding retryable failures is not handed back to SQS: each return would spend one of
the queue's `maxReceiveCount` receives, and SQS dead-letters a message by itself once they are
used up — after about half an hour of outage with the defaults. Instead the consumer sends the
events still to do as a new message, delayed by the back-off below and carrying their attempt
count and the time the webhook first saw them, and lets Lambda delete the old one. A new message
starts at receive 1, so the redrive policy only catches what it is there for: a consumer that
crashes or times out on a message. Events are given up on (dead-lettered as `expired`) only once
they are older than `MAX_EVENT_AGE_SECONDS`.
"""

from __future__ import annotations

import math
import time

# The first retry waits about 30 s, each next one twice as long, up to SQS's longest message delay.
BASE_DELAY_S = 30
MAX_DELAY_S = 900  # SQS DelaySeconds' upper limit; also the longest a recovered SMC waits for a backlog


def now() -> float:
    """Seconds since the epoch; the one clock queued mode reads (consumer, redrive; tests replace it)."""
    return time.time()


def delay_for(attempt: int, retry_after: float | None = None, at: float | None = None) -> int:
    """Seconds to hold events back after their `attempt`-th failed try (1 = the first), from `at`.

    The step doubles with each try up to 15 minutes, and the delay runs to the next multiple of
    the step on the clock (at least half a step away, as SQS's limit allows) instead of being
    jittered: events that failed at different moments then come back at the same moment, and
    share one consumer batch and so one SMC call per target. Spreading them out would only cost
    calls, since the consumer's bounded concurrency already paces what reaches SMC. Never
    shorter than SMC's `Retry-After` up to what SQS allows (a longer one is waited out 15
    minutes at a time).
    """
    step = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(max(attempt, 1) - 1, 10))
    moment = now() if at is None else at
    wait = step - moment % step
    if wait < step / 2 and wait + step <= MAX_DELAY_S:
        wait += step
    return int(min(MAX_DELAY_S, math.ceil(max(wait, retry_after or 0.0))))


def expired(first_seen: float, delay_s: int, max_age_s: int, at: float) -> bool:
    """Whether events first seen at `first_seen` would be older than `max_age_s` by their next try."""
    return at - first_seen + delay_s > max_age_s


def describe_age(seconds: float) -> str:
    """`4 days`, `6 hours`, `15 minutes`: how long, for a dead letter's reason."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            value = int(seconds // size)
            return f"{value} {unit}{'s' if value != 1 else ''}"
    return f"{int(seconds)} seconds"
