"""screen → a row of the events list named after the screen."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.events_list import event_row
from handler.operations import Operation
from handler.settings import Settings


def map_screen(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """EVENT_NAME is the screen `name`; `properties` go to PROPERTIES."""
    name = event.raw.get("name")
    return [event_row(event, settings, name=str(name) if name else None, payload=event.raw.get("properties"))]
