"""Write the test events for `sam local invoke` (run by `make events`; standard library only).

Each `<case>.json` is an API Gateway HTTP API (payload 2.0) event for POST /segment, in the shape
the function receives: lower-case header names, `requestContext.http`, the body as a string
(base64 when `isBase64Encoded`). Bodies are serialised like Segment's `JSON.stringify` (no spaces,
non-ASCII kept) and signed with the EXAMPLE secret in `examples.json`:
`x-signature` = lowercase hex HMAC-SHA1(sharedSecret, body bytes); batches carry
`authorization: Bearer <bearerToken>`.

Also written: `cases.json` (per file: expected HTTP status, per-event outcomes, SMC effect) and
`env.json` (the `--env-vars` file: example settings pointing at the local SMC sandbox).

    python events/generate.py [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from payloads import (
    SERVER_CONTEXT,
    audience_entered,
    group,
    identify,
    message_id,
    page,
    screen,
    segment_event,
    segment_json,
    track,
)

EVENTS_DIR = Path(__file__).resolve().parent
EXAMPLE_SECRET: dict[str, str] = json.loads((EVENTS_DIR / "examples.json").read_text())["secret"]

# --env-vars for `sam local invoke` (only variables template.yaml declares take effect).
ENV_VARS = {
    "SMC_ADMIN_URL": "http://127.0.0.1:8899",  # sandbox; plain http is allowed on loopback only
    "SMC_ORGANIZATION": "demo",
    "SMC_EVENTS_LIST": "segment_events",
    "SMC_ALLOWED_EVENTS": "Order Completed,Product Viewed,Signed Up",
    "SMC_SEND_PAGE_EVENTS": "true",
    "SMC_SEND_SCREEN_EVENTS": "true",
    "SMC_SEND_ALIAS_EVENTS": "true",
    "SMC_SEND_GROUP_EVENTS": "true",
    "SMC_EXTRA_ALLOWED_HOSTS": "127.0.0.1",
    "SMC_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:segment-smc-example-AbCdEf",
    "IDEMPOTENCY_TABLE": "segment-smc-destination-idempotency-example",
    "STATE_TABLE": "segment-smc-destination-state-example",
    "ORDERING_TTL_SECONDS": "604800",
    "RESPONSE_DEADLINE_MS": "4500",
    "SECRET_MAX_AGE_SECONDS": "300",
    "IDEMPOTENCY_TTL_SECONDS": "86400",
    "DELIVERY_MODE": "sync",
    "DELIVERY_QUEUE_URL": "",
    "DEAD_LETTER_QUEUE_URL": "",
    "MAX_EVENT_AGE_SECONDS": "345600",
    # Profiles on the sandbox's user list `users` (keyed on CUSTOMER_ID), Engage audiences as its
    # static segments, and one transactional journey.
    "SMC_PROFILE_LIST": "users",
    "SMC_PROFILE_KEY": "CUSTOMER_ID",
    "SMC_PROFILE_FIELDS": json.dumps(
        {
            "MAIL": "traits.email",
            "FIRSTNAME": "traits.firstName",
            "CITY": "traits.address.city",
            "LOCALE": "context.locale",
        },
        separators=(",", ":"),
    ),
    "SMC_PROFILE_MODE": "InsertAndUpdate",
    "SMC_AUDIENCES": "true",
    "SMC_TRANSACTIONAL_EVENTS": json.dumps({"Order Completed": "order_confirmation"}, separators=(",", ":")),
    "SMC_TRANSACTIONAL_LANGUAGE": "EN",
    "SMC_DELETE_PROFILES": "true",
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
}

API_ID = "a1b2c3d4e5"
HOST = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
SEGMENT_IP = "198.51.100.23"  # documentation range: the caller (Segment's delivery service)
TIME_EPOCH_MS = 1764238530000  # 2025-11-27T10:15:30Z
CLASSIC_AGENT = "Segment.io/1.0"
ACTIONS_AGENT = "Segment (Actions)"


def sign(body: bytes, secret: str | None = None) -> str:
    """Segment's X-Signature: lowercase hex HMAC-SHA1 of the exact body bytes."""
    key = EXAMPLE_SECRET["sharedSecret"] if secret is None else secret
    return hmac.new(key.encode("utf-8"), body, hashlib.sha1).hexdigest()


def api_event(
    body: bytes,
    headers: dict[str, str],
    name: str,
    *,
    user_agent: str = CLASSIC_AGENT,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The HTTP API v2 event for one POST /segment carrying `body`; `name` seeds its ids."""
    digest = hashlib.sha256(name.encode()).digest()
    request_id = base64.b64encode(digest[:12]).decode("ascii")
    all_headers = {
        "accept": "application/json",
        "content-length": str(len(body)),
        "content-type": "application/json",
        "host": HOST,
        "user-agent": user_agent,
        "x-amzn-trace-id": f"Root=1-67482dc2-{digest.hex()[:24]}",
        "x-forwarded-for": SEGMENT_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **headers,
    }
    return {
        "version": "2.0",
        "routeKey": "POST /segment",
        "rawPath": "/segment",
        "rawQueryString": "",
        "headers": dict(sorted(all_headers.items())),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": HOST,
            "domainPrefix": API_ID,
            "http": {
                "method": "POST",
                "path": "/segment",
                "protocol": "HTTP/1.1",
                "sourceIp": SEGMENT_IP,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "POST /segment",
            "stage": "$default",
            "time": "27/Nov/2025:10:15:30 +0000",
            "timeEpoch": TIME_EPOCH_MS,
        },
        "body": base64.b64encode(body).decode("ascii") if base64_body else body.decode("utf-8"),
        "isBase64Encoded": base64_body,
    }


def outcomes(delivered: int = 0, filtered: int = 0, rejected: int = 0) -> dict[str, int]:
    """The per-outcome counts of the JSON answer (first delivery, empty idempotency table)."""
    received = delivered + filtered + rejected
    return {
        "received": received,
        "delivered": delivered,
        "filtered": filtered,
        "duplicate": 0,
        "rejected": rejected,
        "retried": 0,
    }


def effect(
    rows: int = 0,
    deletes: int = 0,
    adds: int = 0,
    removes: int = 0,
    *,
    profiles: int = 0,
    profile_deletes: int = 0,
    audience_adds: int = 0,
    messages: int = 0,
) -> dict[str, int]:
    """What SMC is asked to do: rows loaded into / keys deleted from the events list, records
    added to / removed from the static segment vip, profile rows loaded into / deleted from the
    user list, members added to an audience's segment, transactional messages sent."""
    return {
        "events_list_rows": rows,
        "events_list_deletes": deletes,
        "segment_adds": adds,
        "segment_removes": removes,
        "profile_rows": profiles,
        "profile_deletes": profile_deletes,
        "audience_adds": audience_adds,
        "transactional_sends": messages,
    }


def cases() -> list[dict[str, Any]]:
    """Every case: its event, the expected answer and SMC effect."""
    bearer = {"authorization": f"Bearer {EXAMPLE_SECRET['bearerToken']}"}
    out: list[dict[str, Any]] = []

    def signed(
        file: str,
        description: str,
        body: bytes,
        status: int,
        result: dict[str, int] | None,
        smc: dict[str, int],
        **kwargs: Any,
    ) -> None:
        headers = {"x-signature": sign(body)}
        out.append(
            _case(
                file, description, "signature", api_event(body, headers, file, **kwargs), status, result, smc
            )
        )

    def batched(
        file: str,
        description: str,
        body_value: Any,
        status: int,
        result: dict[str, int],
        smc: dict[str, int],
        user_agent: str,
    ) -> None:
        body = segment_json(body_value)
        headers = dict(bearer)
        if isinstance(body_value, list):  # Actions signs the first element only
            headers["x-signature"] = sign(segment_json(body_value[0]))
        out.append(
            _case(
                file,
                description,
                "bearer",
                api_event(body, headers, file, user_agent=user_agent),
                status,
                result,
                smc,
            )
        )

    signed(
        "identify.json",
        "identify: one events-list row keyed on messageId, and the profile's mapped columns",
        segment_json(identify()),
        200,
        outcomes(delivered=1),
        effect(rows=1, profiles=1),
    )
    signed(
        "track.json",
        "track of an allowed event (Order Completed): its row, and the transactional journey",
        segment_json(track("Order Completed", "track")),
        200,
        outcomes(delivered=1),
        effect(rows=1, messages=1),
    )
    signed(
        "audience_entered.json",
        "Engage audience: track Audience Entered adds the person to the audience's segment (created)",
        segment_json(audience_entered()),
        200,
        outcomes(delivered=1),
        effect(audience_adds=1),
    )
    signed(
        "track_not_allowed.json",
        "track not in SMC_ALLOWED_EVENTS: answered 200, counted filtered",
        segment_json(track("Button Clicked", "track_not_allowed")),
        200,
        outcomes(filtered=1),
        effect(),
    )
    signed(
        "page.json",
        "page (SMC_SEND_PAGE_EVENTS=true)",
        segment_json(page()),
        200,
        outcomes(delivered=1),
        effect(rows=1),
    )
    signed(
        "screen.json",
        "screen from a mobile app (SMC_SEND_SCREEN_EVENTS=true)",
        segment_json(screen()),
        200,
        outcomes(delivered=1),
        effect(rows=1),
    )
    signed(
        "group_add.json",
        "group without traits.method (= ADD): add to static segment vip",
        segment_json(group(None, "group_add")),
        200,
        outcomes(delivered=1),
        effect(adds=1),
    )
    signed(
        "group_remove.json",
        "group with traits.method REMOVE: remove from static segment vip",
        segment_json(group("REMOVE", "group_remove")),
        200,
        outcomes(delivered=1),
        effect(removes=1),
    )
    alias = segment_event("alias", "alias", SERVER_CONTEXT, previousId="guest-7f3e2a", userId="user_48213")
    signed(
        "alias.json",
        "alias: previousId guest-7f3e2a -> userId user_48213",
        segment_json(alias),
        200,
        outcomes(delivered=1),
        effect(rows=1),
    )
    delete = {
        "type": "delete",
        "messageId": message_id("delete"),
        "userId": "user_90417",
        "timestamp": "2025-11-27T10:15:29.004Z",
        "receivedAt": "2025-11-27T10:15:29.042Z",
        "context": {},
        "integrations": {},
    }
    signed(
        "delete.json",
        "user deletion request: delete the user's events-list rows and profile",
        segment_json(delete),
        200,
        outcomes(delivered=1),
        effect(deletes=1, profile_deletes=1),
    )
    signed(
        "track_base64.json",
        "track whose body API Gateway passed base64-encoded",
        segment_json(track("Signed Up", "track_base64")),
        200,
        outcomes(delivered=1),
        effect(rows=1),
        base64_body=True,
    )

    actions = [
        # later than identify.json's: its profile columns are newer news (handler/ordering.py)
        {**identify("actions_batch/identify"), "timestamp": "2025-11-27T10:16:02.120Z"},
        track("Product Viewed", "actions_batch/track"),
        track("Button Clicked", "actions_batch/track_filtered"),
        page("actions_batch/page"),
    ]
    batched(
        "actions_batch.json",
        "Webhooks (Actions) batch: top-level array, Authorization: Bearer",
        actions,
        200,
        outcomes(delivered=3, filtered=1),
        effect(rows=3, profiles=1),
        ACTIONS_AGENT,
    )
    envelope = {
        "batch": [
            track("Order Completed", "batch_envelope/track", SERVER_CONTEXT),
            {**identify("batch_envelope/identify"), "timestamp": "2025-11-27T10:17:41.310Z"},
            screen("batch_envelope/screen"),
        ],
        "context": SERVER_CONTEXT,
        "sentAt": "2025-11-27T10:15:29.500Z",
    }
    batched(
        "batch_envelope.json",
        'Tracking API envelope {"batch": [...], "context": {...}}, bearer',
        envelope,
        200,
        outcomes(delivered=3),
        effect(rows=3, profiles=1, messages=1),
        "analytics-python/2.3.3",
    )

    body = segment_json(track("Order Completed", "bad_signature"))
    out.append(
        _case(
            "bad_signature.json",
            "X-Signature made with another secret",
            "invalid",
            api_event(body, {"x-signature": sign(body, "not-the-shared-secret")}, "bad_signature"),
            401,
            None,
            effect(),
        )
    )
    signed(
        "malformed_json.json",
        "correctly signed body that is not JSON (truncated)",
        segment_json(track("Order Completed", "malformed_json"))[:-40],
        400,
        None,
        effect(),
    )
    missing = track("Order Completed", "track_missing_event")
    del missing["event"]
    signed(
        "track_missing_event.json",
        "track without the required event name",
        segment_json(missing),
        400,
        outcomes(rejected=1),
        effect(),
    )
    array = [
        track("Order Completed", "array_signature_only/1"),
        track("Product Viewed", "array_signature_only/2"),
    ]
    out.append(
        _case(
            "array_signature_only.json",
            "array with only X-Signature (it covers the first element only): refused",
            "invalid",
            api_event(
                segment_json(array),
                {"x-signature": sign(segment_json(array[0]))},
                "array_signature_only",
                user_agent=ACTIONS_AGENT,
            ),
            401,
            None,
            effect(),
        )
    )
    return out


def _case(
    file: str,
    description: str,
    auth: str,
    event: dict[str, Any],
    status: int,
    result: dict[str, int] | None,
    smc: dict[str, int],
) -> dict[str, Any]:
    return {
        "file": file,
        "description": description,
        "auth": auth,
        "status": status,
        "outcomes": result,
        "effect": smc,
        "event": event,
    }


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def write(out_dir: Path) -> list[Path]:
    """Write every event file, cases.json and env.json into `out_dir`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    index = []
    for case in cases():
        event = case.pop("event")
        path = out_dir / case["file"]
        path.write_text(dump(event), encoding="utf-8")
        written.append(path)
        index.append(case)
    for name, value in (("cases.json", index), ("env.json", {"WebhookFunction": ENV_VARS})):
        path = out_dir / name
        path.write_text(dump(value), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EVENTS_DIR, help="folder to write (default: events/)")
    args = parser.parse_args()
    for path in write(args.out):
        print(path)


if __name__ == "__main__":
    main()
