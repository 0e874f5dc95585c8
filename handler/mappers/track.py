"""track → a row of the events list named after the event (when SMC_ALLOWED_EVENTS lets it), a
transactional message, and an Engage audience's membership when the track is one."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.mappers.audience import map_audience
from handler.mappers.events_list import event_row
from handler.mappers.transactional import map_transactional
from handler.operations import Operation
from handler.settings import Settings


def map_track(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """EVENT_NAME is the track `event`; `properties` go to PROPERTIES. The allowlist governs the
    row only: audiences and transactional journeys act on any event name."""
    name = str(event.raw["event"])
    operations = []
    if settings.track_allowed(name):
        operations.append(event_row(event, settings, name=name, payload=event.raw.get("properties")))
    if settings.profiles is not None:
        operations += map_transactional(event, settings) + map_audience(event, settings)
    return operations
