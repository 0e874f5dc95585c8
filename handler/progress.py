"""What an earlier attempt of the same request already settled for good.

A request answered 503/429 is sent again by Segment, whole. Its idempotency record (keyed on the
request's event ids) keeps, on that path only, which of its events SMC took or refused for good;
the redelivery sends only the rest and reports the others as they were. Stored compressed: a
4,000-event batch fits DynamoDB's 400 KB item limit with room to spare.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from handler.events import SegmentEvent
from handler.observability import count
from handler.outcomes import Outcome, Report

# Outcomes a later attempt cannot change: sending those events again is wasted work (enqueued:
# queued mode's webhook is done with the event once SQS holds it).
FINAL: frozenset[Outcome] = frozenset({"delivered", "rejected", "duplicate", "enqueued"})
_VERSION = 1


@dataclass(slots=True)
class Progress:
    """messageId → (outcome, reason) of the events an attempt settled for good."""

    settled: dict[str, tuple[Outcome, str | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.settled)

    @classmethod
    def of(cls, report: Report, events: list[SegmentEvent]) -> Progress:
        """The final outcomes among `events` (the ones that went to SMC) in `report`."""
        settled: dict[str, tuple[Outcome, str | None]] = {}
        for event in events:
            result = report.results[event.index]
            if result.outcome in FINAL:
                settled[event.message_id] = (result.outcome, result.reason)
        return cls(settled)

    def settle_known(self, events: list[SegmentEvent], report: Report) -> list[SegmentEvent]:
        """Settle the events this progress knows as they were settled; return the others."""
        rest: list[SegmentEvent] = []
        for event in events:
            known = self.settled.get(event.message_id)
            if known is None:
                rest.append(event)
            else:
                report.settle(event.index, *known)
        count("EventsSettledEarlier", len(events) - len(rest))
        return rest

    def encode(self) -> bytes:
        """Compact, compressed form for the idempotency record."""
        doc = {
            "v": _VERSION,
            "s": {mid: [outcome, reason] for mid, (outcome, reason) in self.settled.items()},
        }
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogatepass"), 6)

    @classmethod
    def decode(cls, blob: bytes) -> Progress:
        """The progress `encode` stored; an unreadable one is empty (everything is sent again)."""
        try:
            doc = json.loads(zlib.decompress(blob).decode("utf-8", "surrogatepass"))
            entries = doc["s"] if doc.get("v") == _VERSION else {}
            settled = {
                str(mid): (outcome, reason if isinstance(reason, str) else None)
                for mid, (outcome, reason) in entries.items()
                if outcome in FINAL
            }
        except (ValueError, TypeError, KeyError, AttributeError, zlib.error):
            return cls()
        return cls(settled)
