"""A point in time every SMC call and retry must finish by."""

from __future__ import annotations

import time


class Deadline:
    """Monotonic deadline: `remaining()` seconds are left until it passes."""

    __slots__ = ("_end",)

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + max(0.0, seconds)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._end - time.monotonic())


def request_deadline(response_deadline_ms: int, lambda_remaining_ms: int | None) -> Deadline:
    """The answer must reach Segment before it gives up and before Lambda stops us.

    A safety margin leaves time to record the outcome and write the idempotency record.
    """
    budget_ms = response_deadline_ms
    if lambda_remaining_ms is not None:
        budget_ms = min(budget_ms, lambda_remaining_ms - 1000)
    return Deadline(max(0, budget_ms - 300) / 1000)
