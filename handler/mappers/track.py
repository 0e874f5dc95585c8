"""track → a row of the events list named after the event."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.events_list import event_row
from handler.operations import Operation
from handler.settings import Settings


def map_track(event: SegmentEvent, settings: Settings) -> Operation:
    """EVENT_NAME is the track `event`; `properties` go to PROPERTIES."""
    return event_row(event, settings, name=str(event.raw["event"]), payload=event.raw.get("properties"))
