"""Validating and filtering Segment events before anything is mapped."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from handler.names import is_api_name
from handler.outcomes import EventResult, Report
from handler.request import MAX_EVENT_BYTES
from handler.settings import Settings

EventType = Literal["identify", "track", "page", "screen", "group", "alias", "delete"]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
INTEGRATION_NAME = "Selligent Marketing Cloud"
MAX_MESSAGE_ID = 100
MAX_ID_LENGTH = 255


class InvalidEvent(ValueError):
    """An event breaks a rule; the message names the field, never its value."""


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    """A validated event: the fields every mapper needs, plus the raw object."""

    index: int
    type: EventType
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    timestamp: str  # ISO 8601 UTC
    received_at: str
    raw: dict[str, Any]


def compact_json(value: object) -> str:
    """JSON without spaces, as stored in SMC text columns."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def derive_message_id(raw: dict[str, Any]) -> str:
    """A stable id for an event that has none: the same content always gets the same id."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "derived-" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def iso_utc(value: object, field: str) -> str | None:
    """Normalise an ISO 8601 timestamp to UTC with millisecond precision; None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidEvent(f"{field} must be an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidEvent(f"{field} must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _identifier(raw: dict[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(f"{field} must be a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEvent(f"{field} is longer than {MAX_ID_LENGTH} characters")
    return text


def _require_text(raw: dict[str, Any], field: str, kind: str) -> None:
    value = raw.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{kind} requires {field}")


def _check_group(raw: dict[str, Any]) -> None:
    traits = raw.get("traits")
    if not isinstance(traits, dict):
        raise InvalidEvent("group requires traits.matchkey and traits.userlist")
    for field, value in (("groupId", raw.get("groupId")), ("traits.userlist", traits.get("userlist"))):
        if value is None or value == "":
            raise InvalidEvent(f"group requires {field}")
        if not is_api_name(value):
            raise InvalidEvent(f"{field} must be an SMC api name (letters, digits, _ or -)")
    if not traits.get("matchkey"):
        raise InvalidEvent("group requires traits.matchkey")
    if not is_api_name(traits["matchkey"]):
        raise InvalidEvent("traits.matchkey must be an SMC field name (letters, digits, _ or -)")
    method = traits.get("method", "ADD")
    if not isinstance(method, str) or method.upper() not in {"ADD", "REMOVE"}:
        raise InvalidEvent("traits.method must be ADD or REMOVE")


def validate_event(index: int, raw: object, received_at: str) -> SegmentEvent:
    """Check one event against the rules of its call type; raise `InvalidEvent` on the first break."""
    if not isinstance(raw, dict):
        raise InvalidEvent("event must be a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind.lower() not in EVENT_TYPES:
        raise InvalidEvent("type must be one of " + ", ".join(sorted(EVENT_TYPES)))
    kind = kind.lower()
    user_id = _identifier(raw, "userId")
    anonymous_id = _identifier(raw, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidEvent("userId or anonymousId is required")
    if kind == "track":
        _require_text(raw, "event", kind)
    elif kind == "alias":
        if _identifier(raw, "previousId") is None or user_id is None:
            raise InvalidEvent("alias requires previousId and userId")
    elif kind == "group":
        if user_id is None:
            raise InvalidEvent("group requires userId")
        _check_group(raw)
    for field in ("context", "properties", "traits", "integrations"):
        if raw.get(field) is not None and not isinstance(raw[field], dict):
            raise InvalidEvent(f"{field} must be an object")
    message_id = raw.get("messageId")
    if message_id is None or message_id == "":
        message_id = derive_message_id(raw)
    elif not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID:
        raise InvalidEvent(f"messageId must be a string of at most {MAX_MESSAGE_ID} characters")
    timestamp = (
        iso_utc(raw.get("timestamp"), "timestamp")
        or iso_utc(raw.get("originalTimestamp"), "originalTimestamp")
        or iso_utc(raw.get("receivedAt"), "receivedAt")
        or received_at
    )
    return SegmentEvent(
        index=index,
        type=cast(EventType, kind),
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        received_at=iso_utc(raw.get("receivedAt"), "receivedAt") or received_at,
        raw=raw,
    )


def filter_reason(event: SegmentEvent, settings: Settings) -> str | None:
    """Why settings or the event's own `integrations` keep it from SMC, or None to send it."""
    integrations = event.raw.get("integrations") or {}
    explicit = integrations.get(INTEGRATION_NAME)
    if explicit is False:
        return "integrations opt-out"
    if integrations.get("All") is False and not explicit:
        return "integrations opt-out (All: false)"
    toggles = {
        "page": settings.send_page_events,
        "screen": settings.send_screen_events,
        "alias": settings.send_alias_events,
        "group": settings.send_group_events,
    }
    if not toggles.get(event.type, True):
        return f"{event.type} events are turned off"
    if event.type == "track" and not settings.track_allowed(str(event.raw["event"])):
        return "track event not in SMC_ALLOWED_EVENTS"
    return None


def _fallback_id(raw: object) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("messageId"), str) and raw["messageId"]:
        return str(raw["messageId"])[:MAX_MESSAGE_ID]
    return derive_message_id(raw if isinstance(raw, dict) else {"value": raw})


def admit(raw_events: list[Any], settings: Settings, received_at: str) -> tuple[Report, list[SegmentEvent]]:
    """Validate, de-duplicate and filter a request's events.

    Returns the report (with invalid, duplicate and filtered events already settled) and the
    events that go on to SMC.
    """
    report = Report(results=[])
    admitted: list[SegmentEvent] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_events):
        kind = raw.get("type") if isinstance(raw, dict) else None
        known = isinstance(kind, str) and kind.lower() in EVENT_TYPES
        result = EventResult(index=index, message_id="", event_type=str(kind).lower() if known else "invalid")
        report.results.append(result)
        try:
            if len(compact_json(raw).encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES:
                raise InvalidEvent(f"event is over {MAX_EVENT_BYTES} bytes")
            event = validate_event(index, raw, received_at)
        except InvalidEvent as exc:
            result.message_id = _fallback_id(raw)
            report.settle(index, "rejected", str(exc))
            continue
        result.message_id, result.event_type = event.message_id, event.type
        if event.message_id in seen:
            report.settle(index, "duplicate", "messageId repeated in this request")
            continue
        seen.add(event.message_id)
        reason = filter_reason(event, settings)
        if reason is not None:
            report.settle(index, "filtered", reason)
            continue
        admitted.append(event)
    return report, admitted
