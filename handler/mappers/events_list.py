"""The shared row builder for call types stored as rows of the events list."""

from __future__ import annotations

from typing import Any

from handler.events import SegmentEvent
from handler.operations import Operation, Target
from handler.schema import EVENT_NAME, EVENTS_LIST_FIELDS, EVENTS_LIST_KEY
from handler.settings import Settings

_TARGETS: dict[str, Target] = {}  # one per list name: built once, not once per event


def events_list_target(settings: Settings) -> Target:
    """Loads keyed on MESSAGE_ID: an upsert, so a redelivered event never makes a second row."""
    target = _TARGETS.get(settings.events_list)
    if target is None:
        target = _TARGETS[settings.events_list] = Target(
            "load", settings.events_list, EVENTS_LIST_KEY, EVENTS_LIST_FIELDS
        )
    return target


def event_row(
    event: SegmentEvent,
    settings: Settings,
    *,
    name: str | None = None,
    payload: Any = None,
    previous_id: str | None = None,
) -> Operation:
    """A row in `EVENTS_LIST_FIELDS` order for one event."""
    row: list[object] = [
        event.message_id,
        event.type,
        None if name is None else EVENT_NAME.fit(name),
        event.user_id,
        event.anonymous_id,
        previous_id,
        event.timestamp,
        event.received_at,
        event.encoded_json(payload),
        event.encoded_json(event.raw.get("context")),
    ]
    return Operation(events_list_target(settings), row, [event.index])
