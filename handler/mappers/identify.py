"""identify → a row of the events list (`traits` go to PROPERTIES), the profile upsert, and an
Engage audience's membership when the identify is one."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.audience import map_audience
from handler.mappers.events_list import event_row
from handler.mappers.profile import map_profile
from handler.operations import Operation
from handler.settings import Settings


def map_identify(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """The userId is SMC's business key for the person; their traits travel as JSON."""
    row = event_row(event, settings, payload=event.raw.get("traits"))
    if settings.profiles is None:
        return [row]
    return [row, *map_profile(event, settings), *map_audience(event, settings)]
