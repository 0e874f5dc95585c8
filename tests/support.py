"""Test helpers: realistic Segment events, signed API Gateway v2 requests, a Lambda context."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

SHARED_SECRET = "test-shared-secret-5f2c"
PREVIOUS_SHARED_SECRET = "test-old-shared-secret-91aa"
BEARER_TOKEN = "test-bearer-token-77d1"
PREVIOUS_BEARER_TOKEN = "test-old-bearer-token-0c3e"
SMC_KEY = "svc-key-test"
SMC_SECRET = "svc-secret-test-4b9e"
ORG = "demo"
EVENTS_LIST = "segment_events"
PII_EMAIL = "jane.doe.pii@example.com"
PII_TRAIT = "Trait-Value-Very-Private-1234"

# A customer's events list whose EVENT_NAME is narrower than the 255 the destination truncates
# to: SMC itself then refuses a longer name, which is how tests get rows SMC refuses.
NARROW_EVENT_NAME = 64
TOO_LONG_FOR_NARROW = 100

_ids = itertools.count(1)
RESPONSES: list[str] = []  # every response `invoke` returned (status, headers and body), in order


def base_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A full Segment event of `kind`, as Segment's libraries send it."""
    n = next(_ids)
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"msg-{uuid.uuid4()}",
        "userId": f"user-{n}",
        "anonymousId": f"anon-{uuid.uuid4()}",
        "timestamp": "2026-11-27T10:15:30.123Z",
        "originalTimestamp": "2026-11-27T10:15:29.900Z",
        "sentAt": "2026-11-27T10:15:30.050Z",
        "receivedAt": "2026-11-27T10:15:30.400Z",
        "version": 2,
        "channel": "client",
        "context": {
            "ip": "203.0.113.7",
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "locale": "en-US",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "page": {"path": "/pricing", "url": "https://www.example.com/pricing", "title": "Pricing"},
        },
        "integrations": {},
    }
    event.update(fields)
    return event


def identify(**fields: Any) -> dict[str, Any]:
    traits = {"email": PII_EMAIL, "firstName": "Jane", "plan": "premium", "secretTrait": PII_TRAIT}
    return base_event("identify", **{"traits": traits, **fields})


def track(name: str = "Order Completed", **fields: Any) -> dict[str, Any]:
    props = {"orderId": "o-981", "total": 129.5, "currency": "EUR", "email": PII_EMAIL}
    return base_event("track", **{"event": name, "properties": props, **fields})


def page(**fields: Any) -> dict[str, Any]:
    props = {
        "path": "/pricing",
        "referrer": "https://search.example.net/",
        "title": "Pricing",
        "url": "https://www.example.com/pricing",
    }
    return base_event("page", **{"name": "Pricing", "category": "Docs", "properties": props, **fields})


def screen(**fields: Any) -> dict[str, Any]:
    return base_event("screen", **{"name": "Checkout", "properties": {"step": 2}, **fields})


def alias(**fields: Any) -> dict[str, Any]:
    return base_event("alias", **{"previousId": "anon-old-42", **fields})


def group(method: str | None = "ADD", segment: str = "vip", **fields: Any) -> dict[str, Any]:
    traits: dict[str, Any] = {"matchkey": "CUSTOMER_ID", "userlist": "users", "name": "VIP customers"}
    if method is not None:
        traits["method"] = method
    return base_event("group", **{"groupId": segment, "traits": traits, **fields})


def delete(**fields: Any) -> dict[str, Any]:
    return {
        "type": "delete",
        "userId": fields.pop("userId", "user-to-delete"),
        "messageId": f"del-{uuid.uuid4()}",
        "timestamp": "2026-11-27T11:00:00.000Z",
        **fields,
    }


def narrow_event_name(sandbox: Any, list_name: str = EVENTS_LIST) -> None:
    """Make the sandbox's events list take EVENT_NAME of at most NARROW_EVENT_NAME characters."""
    sandbox.remove_field(ORG, list_name, "EVENT_NAME")
    narrow = {"name": "EVENT_NAME", "data_type": "Text", "length": NARROW_EVENT_NAME}
    sandbox.add_fields(ORG, list_name, [narrow])


def sign(body: bytes, secret: str = SHARED_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def api_event(
    payload: Any = None,
    *,
    body: bytes | str | None = None,
    signature: str | bool | None = True,
    bearer: str | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
    method: str = "POST",
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event carrying `payload` (or raw `body`), signed as asked."""
    if body is None:
        body = json.dumps(payload, separators=(",", ":"))
    raw = body.encode() if isinstance(body, str) else body
    hdrs = {
        "content-type": "application/json",
        "user-agent": "Segment.io/1.0",
        "host": "abc.execute-api.eu-west-1.amazonaws.com",
    }
    if signature is True:
        hdrs["x-signature"] = sign(raw)
    elif isinstance(signature, str):
        hdrs["x-signature"] = signature
    if bearer is not None:
        hdrs["authorization"] = f"Bearer {bearer}"
    hdrs.update(headers or {})
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    return {
        "version": "2.0",
        "routeKey": "POST /segment",
        "rawPath": "/segment",
        "rawQueryString": "",
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
            "http": {
                "method": method,
                "path": "/segment",
                "protocol": "HTTP/1.1",
                "sourceIp": "52.1.2.3",
                "userAgent": "Segment.io/1.0",
            },
            "requestId": request_id,
            "routeKey": "POST /segment",
            "stage": "$default",
            "time": "27/Nov/2026:10:15:30 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(raw).decode() if base64_body else raw.decode("utf-8", "surrogatepass"),
        "isBase64Encoded": base64_body,
    }


def redelivered(event: dict[str, Any]) -> dict[str, Any]:
    """Segment's retry of a request: the same body, a new request id and arrival time."""
    context = {**event["requestContext"], "requestId": f"retry-{uuid.uuid4().hex[:8]}"}
    context["timeEpoch"] = int(time.time() * 1000)
    return {**event, "requestContext": context}


@dataclass
class FakeContext:
    """The parts of LambdaContext the handler and Powertools read."""

    timeout_ms: int = 10_000
    function_name: str = "segment-smc-destination-WebhookFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:segment-smc-destination"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _start: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self._start) * 1000))


def invoke(
    event: dict[str, Any], context: FakeContext | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Call the real lambda_handler; return (status, JSON body, headers)."""
    from handler.app import lambda_handler

    response = lambda_handler(event, context or FakeContext())
    RESPONSES.append(json.dumps(response, ensure_ascii=False))  # for the session-end leak scan
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:eu-west-1:123456789012:delivery"
) -> dict[str, Any]:
    """The event Lambda's SQS poller passes for `messages` (as `receive_message` returned them)."""
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": "eu-west-1",
        }
        for m in messages
    ]
    return {"Records": records}
