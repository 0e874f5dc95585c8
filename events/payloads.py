"""Realistic Segment events (fake people, example.com domains) for events/generate.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

WEB_CONTEXT: dict[str, Any] = {
    "library": {"name": "analytics.js", "version": "next-1.70.0"},
    "ip": "203.0.113.42",
    "locale": "en-US",
    "timezone": "America/New_York",
    "userAgent": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
    ),
    "page": {
        "path": "/checkout/confirmation",
        "referrer": "https://shop.example.com/checkout",
        "search": "",
        "title": "Order confirmed | Example Shop",
        "url": "https://shop.example.com/checkout/confirmation",
    },
}
MOBILE_CONTEXT: dict[str, Any] = {
    "library": {"name": "analytics-ios", "version": "1.6.2"},
    "ip": "203.0.113.77",
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "app": {"name": "Example Shop", "version": "4.12.0", "build": "4120", "namespace": "com.example.shop"},
    "device": {"manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
    "os": {"name": "iOS", "version": "18.1"},
    "network": {"wifi": True, "cellular": False},
    "screen": {"width": 393, "height": 852},
}
SERVER_CONTEXT: dict[str, Any] = {"library": {"name": "analytics-python", "version": "2.3.3"}}


def segment_json(value: Any) -> bytes:
    """Serialise like JavaScript's JSON.stringify: no whitespace, non-ASCII characters kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message_id(key: str) -> str:
    return f"ajs-next-{uuid.uuid5(uuid.NAMESPACE_URL, 'segment-smc-example/' + key)}"


def segment_event(kind: str, key: str, context: dict[str, Any], /, **fields: Any) -> dict[str, Any]:
    """A full Segment event as delivered to a webhook; `key` makes the messageId unique."""
    event: dict[str, Any] = {
        "type": kind,
        "messageId": message_id(key),
        "anonymousId": "5c1a0e4f-3b8e-4f2a-9d6e-8a7b2c1d0e9f",
        "userId": "user_48213",
        "channel": "server" if context is SERVER_CONTEXT else "client",
        "context": context,
        "integrations": {},
        "originalTimestamp": "2025-11-27T10:15:28.912Z",
        "timestamp": "2025-11-27T10:15:29.004Z",
        "sentAt": "2025-11-27T10:15:28.950Z",
        "receivedAt": "2025-11-27T10:15:29.042Z",
        "version": 2,
    }
    event.update(fields)
    return event


def identify(key: str = "identify") -> dict[str, Any]:
    traits = {
        "email": "zoe.martin@example.com",
        "firstName": "Zoë",
        "lastName": "Martín",
        "plan": "premium",
        "createdAt": "2024-03-02T08:00:00.000Z",
        "address": {"city": "Lyon", "country": "FR"},
    }
    return segment_event("identify", key, WEB_CONTEXT, traits=traits)


def track(event_name: str, key: str, context: dict[str, Any] = WEB_CONTEXT) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "order_id": "50314b8e9bcf000000000000",
        "total": 27.5,
        "revenue": 25.0,
        "shipping": 3.0,
        "tax": 2.0,
        "discount": 2.5,
        "coupon": "hasbros",
        "currency": "EUR",
        "products": [
            {
                "product_id": "507f1f77bcf86cd799439011",
                "sku": "45790-32",
                "name": "Café grinder",
                "price": 19.0,
                "quantity": 1,
                "category": "Kitchen",
            },
            {
                "product_id": "505bd76785ebb509fc183733",
                "sku": "46493-32",
                "name": "Filter papers",
                "price": 3.0,
                "quantity": 2,
                "category": "Kitchen",
            },
        ],
    }
    if event_name != "Order Completed":
        properties = {"product_id": "507f1f77bcf86cd799439011", "name": "Café grinder", "price": 19.0}
    return segment_event("track", key, context, event=event_name, properties=properties)


def audience_entered(key: str = "audience_entered") -> dict[str, Any]:
    """Engage's audience membership as Segment sends it to an event destination."""
    audience = "high_value_customers"
    personas = {
        "computation_class": "audience",
        "computation_id": "aud_2Nj0TvAAEXAMPLE",
        "computation_key": audience,
        "namespace": "spa_example",
        "space_id": "spa_example",
    }
    context = {**SERVER_CONTEXT, "personas": personas}
    properties = {"audience_key": audience, audience: True}
    return segment_event("track", key, context, event="Audience Entered", properties=properties)


def page(key: str = "page") -> dict[str, Any]:
    return segment_event(
        "page",
        key,
        WEB_CONTEXT,
        name="Order confirmation",
        category="Checkout",
        properties={**WEB_CONTEXT["page"], "keywords": ["order", "confirmation"]},
    )


def screen(key: str = "screen") -> dict[str, Any]:
    return segment_event(
        "screen",
        key,
        MOBILE_CONTEXT,
        name="Basket",
        properties={"items": 2, "value": 25.0, "currency": "EUR"},
    )


def group(method: str | None, key: str) -> dict[str, Any]:
    # groupId = the SMC static segment; traits.userlist/matchkey say which list and field to match
    # (names as seeded in the SMC sandbox: list `users`, static segment `vip`).
    traits: dict[str, Any] = {"userlist": "users", "matchkey": "CUSTOMER_ID", "name": "VIP customers"}
    if method is not None:
        traits["method"] = method
    return segment_event("group", key, SERVER_CONTEXT, groupId="vip", traits=traits)
