"""page → a row of the events list named after the page."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.events_list import event_row
from handler.operations import Operation
from handler.settings import Settings


def map_page(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """EVENT_NAME is the page `name` (its `category` rides in PROPERTIES when there is no name)."""
    properties = event.raw.get("properties")  # as is: its JSON is then the one encoded already
    category = event.raw.get("category")
    if category is not None:
        properties = dict(properties or {})
        properties.setdefault("category", category)
    name = event.raw.get("name")
    return [event_row(event, settings, name=str(name) if name else None, payload=properties)]
