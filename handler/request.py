"""Reading the API Gateway HTTP API (v2) event: method, headers, body bytes, payload shape."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from handler.auth import Shape
from handler.errors import RequestError

MAX_BODY_BYTES = 5_000_000  # Segment Actions sends at most 4 MB; Lambda's synchronous limit is 6 MB
MAX_EVENTS_PER_REQUEST = 4000  # Segment Actions' largest batch
MAX_EVENT_BYTES = 32 * 1024  # Segment's own per-event limit
MAX_JSON_DEPTH = 64


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What arrived: lower-cased header names and the exact body bytes."""

    method: str
    headers: dict[str, str]
    body: bytes
    request_id: str


@dataclass(frozen=True, slots=True)
class Payload:
    """The parsed body: the raw event objects and how they were wrapped."""

    shape: Shape
    events: list[Any]


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_request(event: object) -> HttpRequest:
    """Extract method, headers and raw body from an HTTP API v2 (or REST v1) proxy event."""
    if not isinstance(event, dict):
        raise RequestError(400, "invalid_event", "not an API Gateway proxy event")
    context = _object(event.get("requestContext"))
    http = _object(context.get("http"))
    method = str(http.get("method") or event.get("httpMethod") or "").upper()
    raw_headers = _object(event.get("headers"))
    # HTTP API lower-cases names already; `sam local` and REST APIs do not.
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items() if v is not None}
    body_text = event.get("body")
    if body_text is None:
        body_text = ""
    if not isinstance(body_text, str):
        raise RequestError(400, "invalid_body", "body must be text")
    if len(body_text) > MAX_BODY_BYTES * 4 // 3 + 4:
        raise RequestError(413, "body_too_large", f"body is over {MAX_BODY_BYTES} bytes")
    if event.get("isBase64Encoded") is True:
        try:
            body = base64.b64decode(body_text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "invalid_base64", "body is marked base64 but does not decode") from None
    else:
        body = body_text.encode("utf-8", "surrogatepass")
    return HttpRequest(
        method=method, headers=headers, body=body, request_id=str(context.get("requestId") or "")
    )


def check_envelope(request: HttpRequest) -> None:
    """Refuse what is not a JSON POST within the size limit, before any secret is read."""
    if request.method and request.method != "POST":
        raise RequestError(405, "method_not_allowed", "only POST is accepted")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise RequestError(415, "unsupported_media_type", "Content-Type must be application/json")
    if len(request.body) > MAX_BODY_BYTES:
        raise RequestError(413, "body_too_large", f"body is over {MAX_BODY_BYTES} bytes")
    if not request.body.strip():
        raise RequestError(400, "empty_body", "body is empty")


_CONTAINERS = frozenset((dict, list))


def _depth_ok(value: object, limit: int) -> bool:
    """Whether no value of a `json.loads` result (exact dicts and lists) sits deeper than `limit`
    (the top level is depth 1). Walks level by level and only ever materializes containers: the
    scan of a level's values runs in C and no tuple is made per value (1,000 events: ~5 ms less)."""
    if limit < 1:
        return False
    level: list[Any] = [value] if type(value) in _CONTAINERS else []
    depth = 1
    while level:
        if depth > limit or (depth == limit and any(map(len, level))):
            return False  # a container too deep, or one whose items would be
        dicts = [item for item in level if type(item) is dict]
        items: Iterable[Any] = chain.from_iterable(map(dict.values, dicts))
        if len(dicts) != len(level):
            items = chain(items, chain.from_iterable(item for item in level if type(item) is list))
        level = [item for item in items if type(item) in _CONTAINERS]
        depth += 1
    return True


# What Segment's batch format applies from the envelope to every event in it.
ENVELOPE_FIELDS = ("context", "integrations")


def with_envelope(events: list[Any], envelope: dict[str, Any]) -> list[Any]:
    """The events of `{"batch": [...], "context": {...}, "integrations": {...}}` with the envelope's
    `context` and `integrations` merged in, one level deep, the event's own keys winning — as
    Segment's batch API does. An event's non-object field is left for validation to reject."""
    shared = {name: envelope[name] for name in ENVELOPE_FIELDS if isinstance(envelope.get(name), dict)}
    if not shared:
        return events
    merged_events: list[Any] = []
    for event in events:
        if isinstance(event, dict):
            event = dict(event)
            for name, common in shared.items():
                own = event.get(name)
                if own is None:
                    event[name] = common
                elif isinstance(own, dict):
                    event[name] = {**common, **own}
        merged_events.append(event)
    return merged_events


def parse_payload(body: bytes) -> Payload:
    """Parse the body into events: a single object, a top-level array, or `{"batch": [...]}`."""
    try:
        text = body.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise RequestError(400, "invalid_encoding", "body is not UTF-8") from None
    except RecursionError:
        raise RequestError(400, "too_deep", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, "malformed_json", f"body is not valid JSON: {exc.msg}") from None
    except ValueError:  # an integer literal past Python's 4,300-digit limit (JSON.stringify never makes one)
        raise RequestError(400, "malformed_json", "body is not valid JSON: a number is too long") from None
    if not _depth_ok(data, MAX_JSON_DEPTH):
        raise RequestError(400, "too_deep", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(data, list):
        shape: Shape = "array"
        events: list[Any] = data
    elif isinstance(data, dict) and "batch" in data and "type" not in data:
        if not isinstance(data["batch"], list):
            raise RequestError(400, "invalid_batch", "batch must be an array of events")
        shape, events = "batch", with_envelope(data["batch"], data)
    elif isinstance(data, dict):
        shape, events = "single", [data]
        if len(body) > MAX_EVENT_BYTES:
            raise RequestError(413, "event_too_large", f"event is over {MAX_EVENT_BYTES} bytes")
    else:
        raise RequestError(400, "invalid_payload", "body must be an event object, an array or a batch")
    if not events:
        raise RequestError(400, "empty_batch", "the batch holds no events")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise RequestError(413, "too_many_events", f"a request holds at most {MAX_EVENTS_PER_REQUEST} events")
    return Payload(shape=shape, events=events)
