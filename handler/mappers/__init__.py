"""One mapper per Segment call type; `map_event` dispatches on the event's type."""

from __future__ import annotations

from collections.abc import Callable

from handler.events import EventType, SegmentEvent
from handler.mappers.alias import map_alias
from handler.mappers.delete import map_delete
from handler.mappers.group import map_group
from handler.mappers.identify import map_identify
from handler.mappers.page import map_page
from handler.mappers.screen import map_screen
from handler.mappers.track import map_track
from handler.operations import Operation
from handler.settings import Settings

Mapper = Callable[[SegmentEvent, Settings], list[Operation]]

MAPPERS: dict[EventType, Mapper] = {
    "identify": map_identify,
    "track": map_track,
    "page": map_page,
    "screen": map_screen,
    "alias": map_alias,
    "group": map_group,
    "delete": map_delete,
}


def map_event(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """The SMC operations for a validated event: an events-list row, and with a profile list a
    profile upsert, an audience membership or a transactional send (each a part of the event)."""
    return MAPPERS[event.type](event, settings)


__all__ = ["MAPPERS", "Mapper", "map_event"]
