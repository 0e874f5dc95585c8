"""The benchmark's traffic: realistic mixed Segment events (fresh messageIds every time), wrapped in
API Gateway HTTP API v2 events the way Segment's deliveries arrive."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import time
import uuid
from typing import Any

from bench.env import BEARER_TOKEN, SEGMENTS, SHARED_SECRET, USERS_LIST

# Per 20 events: a web/app mix dominated by track and page, with a few identities and memberships.
MIX: tuple[str, ...] = (
    ("track",) * 8 + ("page",) * 4 + ("identify",) * 3 + ("screen",) * 2 + ("alias",) + ("group",) * 2
)
# Group calls: (segment, method) in turn, so a 1,000-event body touches every static-segment target.
GROUP_TARGETS: tuple[tuple[str, str], ...] = (
    (SEGMENTS[0], "ADD"),
    (SEGMENTS[1], "ADD"),
    (SEGMENTS[0], "REMOVE"),
)
PAD_TO_BYTES = 1000  # Segment events from analytics.js are ~0.8-2 KB; 4,000 of these are a ~4 MB body

_run = uuid.uuid4().hex[:8]
AUDIENCES = ("high_value", "churn_risk", "newsletter_fans")  # Engage audiences of the engage mix
_ids = itertools.count(1)


def _context(n: int) -> dict[str, Any]:
    return {
        "ip": "203.0.113.7",
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "locale": "en-US",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        "page": {
            "path": "/pricing",
            "referrer": "https://search.example.net/?q=smc",
            "title": "Pricing",
            "url": f"https://www.example.com/pricing?visit={n}",
        },
        "campaign": {"name": "autumn", "source": "newsletter", "medium": "email"},
    }


def event(kind: str, position: int) -> dict[str, Any]:
    """One Segment event of `kind` with a messageId never used before (in this or any run)."""
    n = next(_ids)
    body: dict[str, Any] = {
        "type": kind,
        "messageId": f"bench-{_run}-{os.getpid()}-{n}",
        "userId": f"user-{_run}-{os.getpid()}-{n % 5000}",
        "anonymousId": f"anon-{n % 7919:06d}-6c1f-4a9e-9d2b",
        # Later events are later: a person's profile and memberships are ordered by it.
        "timestamp": _now(),
        "originalTimestamp": "2026-11-27T10:15:29.900Z",
        "sentAt": "2026-11-27T10:15:30.050Z",
        "receivedAt": "2026-11-27T10:15:30.400Z",
        "version": 2,
        "channel": "client",
        "context": _context(n),
        "integrations": {},
    }
    if kind == "audience":
        audience = AUDIENCES[n % len(AUDIENCES)]
        personas = {"computation_class": "audience", "computation_key": audience}
        body["context"] = {**body["context"], "personas": personas}
        body.update(type="track", event=("Audience Entered", "Audience Exited")[n % 2])
        body["properties"] = {"audience_key": audience, audience: n % 2 == 0}
    elif kind == "track":
        body["event"] = ("Order Completed", "Product Viewed", "Signed Up")[n % 3]
        body["properties"] = {"orderId": f"o-{n}", "total": 129.5, "currency": "EUR", "items": 3}
    elif kind == "page":
        body.update(name="Pricing", category="Docs", properties={"path": "/pricing", "title": "Pricing"})
    elif kind == "identify":
        body["traits"] = {"email": f"person{n}@example.com", "firstName": "Jane", "plan": "premium"}
    elif kind == "screen":
        body.update(name="Checkout", properties={"step": 2})
    elif kind == "alias":
        body["previousId"] = f"anon-old-{n}"
    elif kind == "group":
        segment, method = GROUP_TARGETS[position % len(GROUP_TARGETS)]
        # Unique per process: two processes' changes of one member would order against each other.
        body["userId"] = f"member-{_run}-{os.getpid()}-{n}"
        body["groupId"] = segment
        body["traits"] = {"matchkey": "CUSTOMER_ID", "userlist": USERS_LIST, "method": method}
    size = len(json.dumps(body, separators=(",", ":")))
    if size < PAD_TO_BYTES:
        body.setdefault("properties", {})["note"] = "x" * (PAD_TO_BYTES - size - 12)
    return body


# The same mix with its group calls (the only events that overwrite state) as track calls instead.
MIX_WITHOUT_GROUPS: tuple[str, ...] = tuple("track" if kind == "group" else kind for kind in MIX)
# With profiles on: one track in 20 is an Engage audience change instead.
MIX_ENGAGE: tuple[str, ...] = ("audience", *MIX[1:])


def _now() -> str:
    moment = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def mixed_events(count: int, mix: tuple[str, ...] = MIX) -> list[dict[str, Any]]:
    """`count` events in the realistic mix, every one with a fresh messageId."""
    groups = itertools.count()
    return [
        event(kind, next(groups) if kind == "group" else 0)
        for kind in itertools.islice(itertools.cycle(mix), count)
    ]


def sign(body: bytes) -> str:
    return hmac.new(SHARED_SECRET.encode(), body, hashlib.sha1).hexdigest()


def api_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    """An HTTP API v2 event: one event is a signed single object (Segment classic webhooks);
    more are a `{"batch": [...]}` body with the bearer token (Segment Actions batching)."""
    payload: Any = events[0] if len(events) == 1 else {"batch": events}
    body = json.dumps(payload, separators=(",", ":"))
    headers = {
        "content-type": "application/json",
        "user-agent": "Segment.io/1.0",
        "host": "abc.execute-api.eu-west-1.amazonaws.com",
    }
    if len(events) == 1:
        headers["x-signature"] = sign(body.encode())
    else:
        headers["authorization"] = f"Bearer {BEARER_TOKEN}"
    return {
        "version": "2.0",
        "routeKey": "POST /segment",
        "rawPath": "/segment",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "http": {"method": "POST", "path": "/segment", "protocol": "HTTP/1.1", "sourceIp": "52.1.2.3"},
            "requestId": f"req-{uuid.uuid4().hex[:12]}",
            "routeKey": "POST /segment",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def request(count: int, mix: tuple[str, ...] = MIX) -> dict[str, Any]:
    """A fresh API Gateway event carrying `count` mixed events."""
    return api_event(mixed_events(count, mix))
