"""Talking to an SMC sandbox over HTTP as a client would: the URL, the key, list and segment loads."""

from __future__ import annotations

from typing import Any

import requests

from sandbox import SmcSandbox

API_KEY = {"X-ApiKey": "demo-key:demo-secret"}
EVENT_FIELDS = "MESSAGE_ID,EVENT_TYPE,USER_ID,EVENT_TIMESTAMP"


def org_url(sb: SmcSandbox, org: str = "demo") -> str:
    return f"{sb.api_url}/organizations/{org}"


def load(
    http: requests.Session,
    sb: SmcSandbox,
    rows: list[Any],
    *,
    list_name: str = "segment_events",
    segment: str | None = None,
    **params: str,
) -> requests.Response:
    """POST rows to a list (or a static segment) load endpoint; events defaults for the query."""
    params.setdefault("keyFields", "MESSAGE_ID")
    params.setdefault("fields", EVENT_FIELDS)
    target = f"/segments/{segment}" if segment else ""
    url = f"{org_url(sb)}/lists/{list_name}{target}/data/load"
    return http.post(url, params=params, json=rows, timeout=5)


def event(message_id: str, user_id: str = "u1", event_type: str = "track") -> list[Any]:
    return [message_id, event_type, user_id, "2024-05-01T10:00:00.123Z"]


def load_users(http: requests.Session, sb: SmcSandbox, *ids: int) -> None:
    response = load(
        http,
        sb,
        [[i, f"user{i}@example.com"] for i in ids],
        list_name="users",
        keyFields="ID",
        fields="ID,MAIL",
    )
    assert response.json()["result_code"] == "Succeeded"
