"""identify → a row of the events list; `traits` go to PROPERTIES."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.events_list import event_row
from handler.operations import Operation
from handler.settings import Settings


def map_identify(event: SegmentEvent, settings: Settings) -> Operation:
    """The userId is SMC's business key for the person; their traits travel as JSON."""
    return event_row(event, settings, payload=event.raw.get("traits"))
