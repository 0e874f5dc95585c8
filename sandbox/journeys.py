"""Transactional journeys: `POST /journeys/transactional/{api_name}/send` with per-recipient results.

A journey is seeded with the user list its MASTER scope looks recipients up in. A send's items
are validated as SMC does (recipient and language required; the language one of the
organization's; a lookup's scope MASTER and its field a column of that list), then each item is
resolved: with a lookup, the profiles whose field equals the recipient (none: that item is
`NotFound`); without one, the recipient must be an e-mail address. The answer has one
`response_data` entry per item, in order, and a top-level `Succeeded`, `PartiallySucceeded` or
`Failed`. Every message sent is kept for inspection.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .model import JsonDict, SmcList, validation_failed

LANGUAGES: tuple[JsonDict, ...] = (
    {"name": "English", "code": "EN", "locale": "en"},
    {"name": "French", "code": "FR", "locale": "fr"},
    {"name": "German", "code": "DE", "locale": "de"},
    {"name": "Dutch", "code": "NL", "locale": "nl"},
)
_CODES = frozenset(language["code"] for language in LANGUAGES)


@dataclass(frozen=True)
class Journey:
    """A transactional journey and the user list its MASTER scope is."""

    api_name: str
    name: str
    list_name: str

    def to_json(self) -> JsonDict:
        return {"api_name": self.api_name, "name": self.name, "launch_state": "none", "type": "transactional"}


@dataclass(frozen=True)
class SentMessage:
    """One message the sandbox sent (what a test looks at instead of an inbox)."""

    id: str
    journey: str
    recipient: str
    language: str
    data: JsonDict
    profile_id: int | None


def _item_error(item: Any, position: int, code: str, description: str) -> JsonDict:
    recipient = item.get("recipient") if isinstance(item, dict) else None
    return {
        "recipient": recipient,
        "language": item.get("language") if isinstance(item, dict) else None,
        "data": {},
        "result_code": code,
        "errors": [{"error_code": f"ERR_{code.upper()}", "description": f"item {position}: {description}"}],
    }


def send(journey: Journey, lst: SmcList | None, body: Any) -> tuple[JsonDict, list[SentMessage]]:
    """The answer to a send, and the messages it sent."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise validation_failed("'items' must be a non-empty array")
    answers: list[JsonDict] = []
    sent: list[SentMessage] = []
    for position, item in enumerate(items):
        answer, message = _send_one(journey, lst, item, position)
        answers.append(answer)
        if message is not None:
            sent.append(message)
    code = "Succeeded" if len(sent) == len(items) else "PartiallySucceeded" if sent else "Failed"
    reply = {
        "result_code": code,
        "errors": [error for answer in answers for error in answer["errors"]],
        "response_data": answers,
        "messages": [{"id": message.id} for message in sent],
    }
    return reply, sent


def _send_one(
    journey: Journey, lst: SmcList | None, item: Any, position: int
) -> tuple[JsonDict, SentMessage | None]:
    if not isinstance(item, dict):
        return _item_error(item, position, "ValidationFailed", "an item must be an object"), None
    recipient, language, data = item.get("recipient"), item.get("language"), item.get("data", {})
    if not isinstance(recipient, str) or not recipient:
        return _item_error(item, position, "ValidationFailed", "recipient is required"), None
    if not isinstance(language, str) or language.upper() not in _CODES:
        return _item_error(
            item, position, "ValidationFailed", "language is not one of the organization's"
        ), None
    if not isinstance(data, dict):
        return _item_error(item, position, "ValidationFailed", "data must be an object"), None
    profile_id = None
    lookup = item.get("lookup")
    if lookup is not None:
        scope = lookup.get("scope") if isinstance(lookup, dict) else None
        field = lookup.get("field") if isinstance(lookup, dict) else None
        column = lst.column(field) if lst is not None and isinstance(field, str) else None
        if scope != "MASTER" or column is None:
            return _item_error(
                item, position, "ValidationFailed", "lookup must be MASTER and a list field"
            ), None
        matches = [
            rid for rid, row in (lst.rows.items() if lst else ()) if str(row.get(column.name)) == recipient
        ]
        if not matches:
            return _item_error(item, position, "NotFound", "no profile matches the recipient"), None
        profile_id = matches[0]
    elif "@" not in recipient:
        return _item_error(item, position, "ValidationFailed", "recipient is not an e-mail address"), None
    message = SentMessage(str(uuid.uuid4()), journey.api_name, recipient, language.upper(), data, profile_id)
    answer = {
        "recipient": recipient,
        "language": language,
        "data": data,
        "result_code": "Succeeded",
        "errors": [],
    }
    return answer, message
