"""Per-event outcomes and the summary answered to Segment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from handler.errors import SmcError

# "enqueued" is the webhook's outcome in queued mode: the consumer then records the final one.
Outcome = Literal["delivered", "filtered", "duplicate", "rejected", "retried", "enqueued"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "filtered", "duplicate", "rejected", "retried", "enqueued")

# Keeps a remembered answer well inside DynamoDB's 400 KB item limit for a 4,000-event batch.
MAX_LISTED_FAILURES = 500
# An event of several parts (an events-list row, a profile, a membership, a transactional send)
# ends in the worst of their outcomes: whatever still needs doing outranks what is done.
_RANK: dict[Outcome, int] = {
    "filtered": 0,
    "duplicate": 1,
    "delivered": 2,
    "enqueued": 2,
    "rejected": 3,
    "retried": 4,
}


@dataclass(slots=True)
class EventResult:
    """What happened to one event of the request."""

    index: int
    message_id: str
    event_type: str
    outcome: Outcome | None = None
    reason: str | None = None
    parts: int = 1  # how many operations decide it (set when the event is mapped)
    settled_parts: int = 0


@dataclass(slots=True)
class Report:
    """The outcome of every event of one request; each event ends with exactly one."""

    results: list[EventResult]
    retry_after: float | None = None
    throttled: bool = False  # SMC answered 429: passed on so Segment slows down
    notes: dict[str, Any] = field(default_factory=dict)

    def settle(
        self, index: int, outcome: Outcome, reason: str | None = None, part: str | None = None
    ) -> None:
        """Record the outcome of one part of an event (most events have one part): the event ends
        in the worst of its parts' outcomes, and a reason names the part when there are several.
        Settling an event more often than it has parts is a bug and raises."""
        result = self.results[index]
        if result.settled_parts >= result.parts:
            raise RuntimeError(f"event {index} already settled as {result.outcome}")
        result.settled_parts += 1
        if part is not None and reason is not None and result.parts > 1:
            reason = f"{part}: {reason}"
        if result.outcome is None or _RANK[outcome] > _RANK[result.outcome]:
            result.outcome, result.reason = outcome, reason

    def note_failure(self, failure: SmcError) -> None:
        """Keep what a retryable SMC failure says about when to come back (429, `Retry-After`)."""
        if failure.status == 429:
            self.throttled = True
        if failure.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, failure.retry_after)

    def settle_rest(self, outcome: Outcome, reason: str) -> None:
        """Settle every part not settled yet (work that stopped part-way, e.g. on an AWS outage)."""
        for result in self.results:
            while result.outcome is None or result.settled_parts < result.parts:
                self.settle(result.index, outcome, reason)

    def expect_parts(self, counts: dict[int, int]) -> None:
        """How many operations decide each of these events (event index → count)."""
        for index, parts in counts.items():
            self.results[index].parts = parts

    def counts(self) -> dict[str, int]:
        """How many events ended in each outcome."""
        totals: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for result in self.results:
            if result.outcome is None or result.settled_parts < result.parts:
                raise RuntimeError(f"event {result.index} has no outcome")
            totals[result.outcome] += 1
        return totals

    def status(self) -> int:
        """The HTTP status Segment acts on: 503/429 retry, 400 drop, 200 done."""
        totals = self.counts()
        if totals["retried"]:
            return 429 if self.throttled else 503
        if totals["rejected"] == len(self.results):
            return 400
        return 200

    def body(self) -> dict[str, Any]:
        """The JSON summary: counts per outcome and, for each failed event, why."""
        totals = self.counts()
        failures = [
            {"index": r.index, "messageId": r.message_id, "outcome": r.outcome, "reason": r.reason}
            for r in self.results
            if r.outcome in ("rejected", "retried")
        ]
        body: dict[str, Any] = {"received": len(self.results)}
        body.update(totals)
        if not totals["enqueued"]:
            del body["enqueued"]  # sync mode: keep the answer to the five outcomes that apply
        body["failures"] = failures[:MAX_LISTED_FAILURES]
        if len(failures) > MAX_LISTED_FAILURES:
            body["failuresOmitted"] = len(failures) - MAX_LISTED_FAILURES
        return body
