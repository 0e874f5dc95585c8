"""alias → a row of the events list linking previousId to userId."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.events_list import event_row
from handler.operations import Operation
from handler.settings import Settings


def map_alias(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """PREVIOUS_ID carries the old identity so SMC journeys can merge the two."""
    return [event_row(event, settings, previous_id=str(event.raw["previousId"]))]
