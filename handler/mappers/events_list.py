"""The shared row builder for call types stored as rows of the events list."""

from __future__ import annotations

from typing import Any

from handler.events import SegmentEvent, compact_json
from handler.operations import Operation, Target
from handler.schema import EVENTS_LIST_FIELDS, EVENTS_LIST_KEY
from handler.settings import Settings


def events_list_target(settings: Settings) -> Target:
    """Loads keyed on MESSAGE_ID: an upsert, so a redelivered event never makes a second row."""
    return Target("load", settings.events_list, EVENTS_LIST_KEY, EVENTS_LIST_FIELDS)


def _json_or_none(value: Any) -> str | None:
    return compact_json(value) if value else None


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
        name,
        event.user_id,
        event.anonymous_id,
        previous_id,
        event.timestamp,
        event.received_at,
        _json_or_none(payload),
        _json_or_none(event.raw.get("context")),
    ]
    return Operation(events_list_target(settings), row, [event.index])
