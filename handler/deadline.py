"""Points in time the work of a request must finish by, counted from when Segment sent it."""

from __future__ import annotations

import time
from dataclasses import dataclass

# Kept after the SMC calls for what follows them: the idempotency record's final write, metrics
# and the answer itself (~10 ms when AWS is well; the write is abandoned if AWS is slower).
FINAL_STEPS_MS = 250
# Lambda must not stop the function before the answer is out.
LAMBDA_MARGIN_MS = 1000
# API Gateway's and Lambda's clocks agree to well within this; a later arrival time is garbled.
CLOCK_SKEW_MS = 1000
# The idempotency record must be open by then (it takes ~5 ms); a slower DynamoDB is given up
# on, and the events are delivered without it, while most of the budget is left for SMC.
OPEN_RECORD_MS = 1000
OPEN_RECORD_SHARE = 0.4


class Deadline:
    """Monotonic deadline: `remaining()` seconds are left until it passes."""

    __slots__ = ("_end",)

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + max(0.0, seconds)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._end - time.monotonic())


@dataclass(frozen=True, slots=True)
class Budget:
    """The two deadlines of a request: SMC work ends by `work`, the answer leaves by `answer`."""

    answer: Deadline
    work: Deadline
    open: Deadline  # the idempotency record is given up on when not open by then
    waited_ms: int  # how long the request waited before the handler ran (cold start, queueing)


def request_budget(
    arrival_epoch_ms: object, response_deadline_ms: int, lambda_remaining_ms: int | None
) -> Budget:
    """Segment gives up `response_deadline_ms` (plus its margin) after it sent the request, which
    API Gateway stamps as `requestContext.timeEpoch`: the time spent before the handler ran
    (cold start, throttling) comes out of the budget.

    An arrival time that is absent, in the future, or older than the whole budget (a replayed or
    hand-made event; Segment has given up on it anyway) counts from now instead: then the work is
    still done, and Segment's retry finds it done.
    """
    waited_ms = 0
    if isinstance(arrival_epoch_ms, int | float) and not isinstance(arrival_epoch_ms, bool):
        age_ms = time.time() * 1000 - arrival_epoch_ms
        if -CLOCK_SKEW_MS <= age_ms < response_deadline_ms:
            waited_ms = max(0, int(age_ms))
    budget_ms = response_deadline_ms - waited_ms
    if lambda_remaining_ms is not None:
        budget_ms = min(budget_ms, lambda_remaining_ms - LAMBDA_MARGIN_MS)
    return Budget(
        answer=Deadline(max(0, budget_ms) / 1000),
        work=Deadline(max(0, budget_ms - FINAL_STEPS_MS) / 1000),
        open=Deadline(max(0, min(OPEN_RECORD_MS, budget_ms * OPEN_RECORD_SHARE)) / 1000),
        waited_ms=waited_ms,
    )
