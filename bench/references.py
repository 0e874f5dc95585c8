"""Baselines the product is measured against, in the same process and run.

* naive: parses the body and posts every event to SMC on its own (one HTTP call per event), over a
  pooled keep-alive session — the most charitable version of "one call per event".
* floor: parses the body, turns every event into an events-list row and sends all rows in one
  HTTP call. No authentication, validation, idempotency, metrics or logs: what no real
  destination can beat.

Neither uses product code, so a product change can never make its own yardstick faster.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from bench.env import EVENTS_LIST, ORG, SMC_KEY, SMC_SECRET

FIELDS = (
    "MESSAGE_ID",
    "EVENT_TYPE",
    "EVENT_NAME",
    "USER_ID",
    "ANONYMOUS_ID",
    "PREVIOUS_ID",
    "EVENT_TIMESTAMP",
    "RECEIVED_AT",
    "PROPERTIES",
    "CONTEXT",
)
PARAMS = {"keyFields": "MESSAGE_ID", "fields": ",".join(FIELDS), "mode": "Sync"}
HEADERS = {"X-ApiKey": f"{SMC_KEY}:{SMC_SECRET}", "Content-Type": "application/json"}


def _dumps(value: Any) -> str | None:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value else None


def row(event: dict[str, Any]) -> list[Any]:
    """The events-list row for any event (the irreducible work: pick fields, encode the JSON ones)."""
    payload = event.get("properties") or event.get("traits")
    return [
        event.get("messageId"),
        event.get("type"),
        event.get("event") or event.get("name"),
        event.get("userId"),
        event.get("anonymousId"),
        event.get("previousId"),
        event.get("timestamp"),
        event.get("receivedAt"),
        _dumps(payload),
        _dumps(event.get("context")),
    ]


def _events(api_event: dict[str, Any]) -> list[dict[str, Any]]:
    data = json.loads(api_event["body"])
    if isinstance(data, dict) and "batch" in data:
        return list(data["batch"])
    return data if isinstance(data, list) else [data]


class References:
    """The two baselines, sharing one keep-alive session to the sandbox."""

    def __init__(self, api_url: str) -> None:
        self.url = f"{api_url}/organizations/{ORG}/lists/{EVENTS_LIST}/data/load"
        self.session = requests.Session()

    def _post(self, rows: list[list[Any]]) -> None:
        body = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
        response = self.session.post(self.url, params=PARAMS, data=body, headers=HEADERS, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"reference call failed: {response.status_code} {response.text[:200]}")

    def floor(self, api_event: dict[str, Any]) -> int:
        """Parse, build every row, one HTTP call. Returns the number of calls (1)."""
        self._post([row(event) for event in _events(api_event)])
        return 1

    def naive(self, api_event: dict[str, Any]) -> int:
        """Parse, then one HTTP call per event. Returns the number of calls."""
        events = _events(api_event)
        for event in events:
            self._post([row(event)])
        return len(events)
