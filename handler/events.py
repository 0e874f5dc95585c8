"""Validating and filtering Segment events before anything is mapped."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from _json import encode_basestring as _encode_basestring
from _json import make_encoder as _make_encoder
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from handler import utf16
from handler.names import is_api_name
from handler.observability import count
from handler.outcomes import EventResult, Report
from handler.request import MAX_EVENT_BYTES
from handler.settings import Profiles, Settings

EventType = Literal["identify", "track", "page", "screen", "group", "alias", "delete"]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
INTEGRATION_NAME = "Selligent Marketing Cloud"
# A static segment membership change; Segment Engage's audience tracks ask for one (handler.mappers).
Method = Literal["ADD", "REMOVE"]
AUDIENCE_TRACKS: dict[str, Method] = {"Audience Entered": "ADD", "Audience Exited": "REMOVE"}
MAX_MESSAGE_ID = 100
# How far an event's timestamp may be ahead of its arrival and still order its changes: clocks of
# devices and servers drift by minutes, not hours (`order_time`).
MAX_FUTURE_SKEW_S = 3600
MAX_ID_LENGTH = 255
# Object-valued fields that rows carry as JSON text: encoded once, by the size check, for the mappers.
ROW_JSON_FIELDS = ("context", "properties", "traits")
# Segment's own timestamp form (UTC, milliseconds): normalising it gives back the very same text.
_CANONICAL_TIMESTAMP = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T(?!24)[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
)
_TOGGLES = {
    "page": "send_page_events",
    "screen": "send_screen_events",
    "alias": "send_alias_events",
    "group": "send_group_events",
}


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
    order_time: str  # what orders overwritten state: `timestamp`, unless it is unusable for that
    raw: dict[str, Any]
    # compact_json of raw's ROW_JSON_FIELDS objects, filled by `admit` (see `encoded_json`).
    encoded: dict[str, str] = dataclass_field(default_factory=dict, compare=False, repr=False)

    def encoded_json(self, value: object) -> str | None:
        """`compact_json(value)` if `value` else None; free when `value` is one of this event's own
        (unmodified) top-level objects, which the size check has encoded already."""
        if not value:
            return None
        for name, text in self.encoded.items():
            if self.raw.get(name) is value:
                return text
        return compact_json(value)


def compact_json(value: object) -> str:
    """JSON without spaces, as stored in SMC text columns.

    Exactly `json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)`, calling
    the C encoder json.dumps ends up in directly: this runs several times per event, and the
    Python layers above it (JSONEncoder construction, encode, iterencode) cost more than
    encoding a typical event's context does.
    """
    # A fresh `markers` dict per call keeps json.dumps' circular-reference check (and thread safety).
    return "".join(_make_encoder({}, str, _encode_basestring, None, ":", ",", False, False, True)(value, 0))


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def encoded_size(raw: object, parts: dict[str, str]) -> int:
    """`len(compact_json(raw).encode("utf-8", "surrogatepass"))`, leaving in `parts` the compact
    JSON of raw's object-valued ROW_JSON_FIELDS, which rows need anyway.

    Encoding a copy with each part replaced by `0` costs little (its scalars only); the size of
    the whole is that of the copy with each `0` swapped for its part's encoding.
    """
    if not isinstance(raw, dict):
        return _utf8_len(compact_json(raw))
    for name in ROW_JSON_FIELDS:
        value = raw.get(name)
        if isinstance(value, dict):
            parts[name] = compact_json(value)
    if not parts:
        return _utf8_len(compact_json(raw))
    shadow = raw.copy()
    for name in parts:
        shadow[name] = 0
    return _utf8_len(compact_json(shadow)) + sum(_utf8_len(text) - 1 for text in parts.values())


def derive_message_id(raw: dict[str, Any]) -> str:
    """A stable id for an event that has none: the same content always gets the same id."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "derived-" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def utc_text(epoch_s: float) -> str:
    """An epoch time as the ISO 8601 UTC text, milliseconds and `Z`, that Segment writes."""
    return _millis_text(datetime.fromtimestamp(epoch_s, UTC))


def _millis_text(utc: datetime) -> str:
    # isoformat, not strftime: twice as fast, and it pads years 1-999 to four digits (strftime's
    # "999-01-01…" is no ISO 8601 timestamp: SMC would refuse the row).
    return utc.isoformat(timespec="seconds")[:19] + f".{utc.microsecond // 1000:03d}Z"


def epoch_of(value: str | None) -> float | None:
    """The epoch seconds of an ISO 8601 time (naive: UTC); None when absent or unusable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def iso_utc(value: object) -> str | None:
    """An ISO 8601 timestamp normalised to UTC with millisecond precision; None when it is absent
    or unusable (the caller falls back to the next time it knows: a garbled time must not cost
    the event, nor order it)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        count("TimestampsUnusable")
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        count("TimestampsUnusable")
        return None
    if _CANONICAL_TIMESTAMP.fullmatch(value):
        return value  # what the lines below would rebuild from it, character for character
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
        count("TimestampsUnusable")
        return None
    return _millis_text(utc)


def order_time(timestamp: str, received: str, arrived: str) -> str:
    """The time that orders an event's changes of overwritten state (handler.ordering): its own
    `timestamp`, unless that is more than `MAX_FUTURE_SKEW_S` after the webhook received it —
    such a time (a wrong device clock, `9999-12-31`) would outrank every real change for years,
    so Segment's `receivedAt` is used, then the arrival time (`TimestampsInFuture`).

    The bound is on the webhook's own clock (`arrived`, ours), not on `receivedAt`, which comes
    in the event like the timestamp does. All three are `iso_utc` text, which sorts as time does."""
    limit = _order_limit(arrived)
    if limit is None or timestamp <= limit:
        return timestamp
    count("TimestampsInFuture")
    return received if received <= limit else arrived


@functools.lru_cache(maxsize=64)  # one arrival time per request (per SQS message when queued)
def _order_limit(arrived: str) -> str | None:
    moment = epoch_of(arrived)
    try:
        return None if moment is None else utc_text(moment + MAX_FUTURE_SKEW_S)
    except (OverflowError, ValueError, OSError):  # an arrival time near year 9999: no bound
        return None


def _identifier(raw: dict[str, Any], field: str) -> str | None:
    """An id, never truncated: a cut id could merge two people, so one over its column's length
    (counted in UTF-16 units, as SMC counts) rejects the event."""
    value = raw.get(field)
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH // 2:
        return value  # the common case, decided without the checks below
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(f"{field} must be a string")
    text = str(value)
    if not utf16.fits(text, MAX_ID_LENGTH):
        raise InvalidEvent(f"{field} is longer than its SMC column ({MAX_ID_LENGTH} UTF-16 code units)")
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


def validate_event(
    index: int, raw: object, received_at: str, encoded: dict[str, str] | None = None
) -> SegmentEvent:
    """Check one event against the rules of its call type; raise `InvalidEvent` on the first break.

    `encoded`: what `encoded_size` left of this very event, kept for the mappers."""
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
        value = raw.get(field)
        if value is not None and not isinstance(value, dict):
            raise InvalidEvent(f"{field} must be an object")
    message_id = raw.get("messageId")
    if message_id is None or message_id == "":
        message_id = derive_message_id(raw)
    elif not isinstance(message_id, str) or not utf16.fits(message_id, MAX_MESSAGE_ID):
        raise InvalidEvent(f"messageId must be a string of at most {MAX_MESSAGE_ID} UTF-16 code units")
    received = iso_utc(raw.get("receivedAt")) or received_at
    timestamp = iso_utc(raw.get("timestamp")) or iso_utc(raw.get("originalTimestamp")) or received
    return SegmentEvent(
        index=index,
        type=cast(EventType, kind),
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        received_at=received,
        order_time=order_time(timestamp, received, received_at),
        raw=raw,
        encoded={} if encoded is None else encoded,
    )


def filter_reason(event: SegmentEvent, settings: Settings) -> str | None:
    """Why settings or the event's own `integrations` keep it from SMC, or None to send it."""
    # Segment routes on `integrations` itself: an event that reached this webhook was meant for it,
    # whatever `All` says. Only an explicit false for this destination is an opt-out left to honour.
    if (event.raw.get("integrations") or {}).get(INTEGRATION_NAME) is False:
        return "integrations opt-out"
    toggle = _TOGGLES.get(event.type)
    if toggle is not None and not getattr(settings, toggle):
        return f"{event.type} events are turned off"
    if event.type == "track" and not settings.track_allowed(str(event.raw["event"])):
        # The allowlist governs the events-list row: a track that triggers a journey or is an
        # audience change still acts (handler.mappers.track leaves its row out).
        profiles = settings.profiles
        if profiles is None or not _acts_on_profiles(event, profiles):
            return "track event not in SMC_ALLOWED_EVENTS"
    return None


def _acts_on_profiles(event: SegmentEvent, profiles: Profiles) -> bool:
    name = str(event.raw["event"])
    return profiles.journey_for(name) is not None or (profiles.audiences and name in AUDIENCE_TRACKS)


def _fallback_id(raw: object) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("messageId"), str) and raw["messageId"]:
        return str(raw["messageId"])[:MAX_MESSAGE_ID]
    return derive_message_id(raw if isinstance(raw, dict) else {"value": raw})


def admit(
    raw_events: list[Any], settings: Settings, received_at: str | Sequence[str]
) -> tuple[Report, list[SegmentEvent]]:
    """Validate, de-duplicate and filter a request's events.

    `received_at`: when they arrived, one time for all or (queued mode, several requests' events
    in one batch) one per event. Returns the report (with invalid, duplicate and filtered events
    already settled) and the events that go on to SMC.
    """
    report = Report(results=[])
    admitted: list[SegmentEvent] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_events):
        kind = raw.get("type") if isinstance(raw, dict) else None
        lowered = kind.lower() if isinstance(kind, str) else None
        result = EventResult(
            index=index, message_id="", event_type=lowered if lowered in EVENT_TYPES else "invalid"
        )
        report.results.append(result)
        parts: dict[str, str] = {}
        try:
            if encoded_size(raw, parts) > MAX_EVENT_BYTES:
                raise InvalidEvent(f"event is over {MAX_EVENT_BYTES} bytes")
            arrived = received_at if isinstance(received_at, str) else received_at[index]
            event = validate_event(index, raw, arrived, parts)
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
