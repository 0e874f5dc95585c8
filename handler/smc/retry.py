"""Back-off and Retry-After handling, bounded by a deadline."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BASE_DELAY_S = 0.1
MAX_DELAY_S = 2.0
MAX_ATTEMPTS = 5


def backoff(attempt: int) -> float:
    """Exponential back-off with full jitter, so parallel Lambdas do not retry in lock-step."""
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))  # noqa: S311 - jitter, not crypto


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 3600))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min(3600.0, (when - datetime.now(UTC)).total_seconds()))
