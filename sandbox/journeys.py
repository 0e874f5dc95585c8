"""Transactional journeys and the rules of `POST /journeys/transactional/{api_name}/send`.

The request's shape is checked as a whole (a 400 sends nothing); each item's values are checked
and resolved on their own, so one bad item fails only itself (`response_data[i].result_code`).
"""

from __future__ import annotations

import collections
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import (
    FieldDef,
    InvalidValue,
    JsonDict,
    SmcList,
    coerce_value,
    result_code_for,
    validation_failed,
)

# The organization's languages: GET /organizations/{org} answers them and a send must use one
# (matched on `code`, case-insensitively).
LANGUAGES: tuple[JsonDict, ...] = (
    {"name": "English", "code": "EN", "locale": "en"},
    {"name": "French", "code": "FR", "locale": "fr"},
    {"name": "German", "code": "DE", "locale": "de"},
    {"name": "Dutch", "code": "NL", "locale": "nl"},
)
DEFAULT_LANGUAGES = ("English",)
LOOKUP_SCOPE = "MASTER"  # the journey's user list: the only scope the sandbox models
_MESSAGE_LIMIT = 100_000  # per journey; a benchmark must not grow memory without bound
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


@dataclass(frozen=True)
class SentMessage:
    """One message a journey sent, kept for inspection (`SmcSandbox.messages`)."""

    id: str
    journey: str
    recipient: str
    language: str
    data: JsonDict | None
    profile_id: int | None  # the user list record it went to; None when sent to an address
    profile: JsonDict | None  # that record's values when it was sent


@dataclass
class Journey:
    """A transactional journey; its MASTER scope is the user list `list`."""

    api_name: str
    name: str
    list: SmcList
    messages: collections.deque[SentMessage] = field(
        default_factory=lambda: collections.deque(maxlen=_MESSAGE_LIMIT)
    )

    def item(self) -> JsonDict:
        """`JourneyItem`, as GET /journeys/transactional lists it."""
        return {"api_name": self.api_name, "type": "transactional"}

    def details(self) -> JsonDict:
        """`TransactionalResponseModel`, as GET /journeys/transactional/{api_name} answers it."""
        return {
            "api_name": self.api_name,
            "name": self.name,
            "launch_state": "launch",
            "type": "transactional",
        }


def unknown_journey(api_name: str) -> JsonDict:
    """The 404 body of a send to a journey that does not exist: the send answer's own shape."""
    description = f"Transactional journey '{api_name}' not found"
    return {
        "result_code": "NotFound",
        "errors": [{"error_code": "ERR_NOT_FOUND", "description": description}],
        "response_data": [],
        "messages": [],
    }


def send(journey: Journey, body: Any) -> JsonDict:
    """Validate the body, send one message per resolved recipient, answer per item in order."""
    items = _items(body)
    response_data: list[JsonDict] = []
    messages: list[JsonDict] = []
    for item in items:
        answer = {"data": item.get("data"), "recipient": item["recipient"], "language": item["language"]}
        try:
            targets = _resolve(journey, item)
        except _ItemFailed as exc:
            errors = [{"error_code": exc.error_code, "description": exc.description}]
            response_data.append({**answer, "result_code": exc.result_code, "errors": errors})
            continue
        for profile_id in targets:
            message = _record(journey, item, profile_id)
            messages.append({"id": message.id})
        response_data.append({**answer, "result_code": "Succeeded", "errors": []})
    failed = sum(1 for answer in response_data if answer["result_code"] != "Succeeded")
    result_code = result_code_for(len(items), failed)
    errors = [] if not failed else [{"error_code": "ERR_SEND", "description": f"{failed} item(s) not sent"}]
    return {
        "result_code": result_code,
        "errors": errors,
        "response_data": response_data,
        "messages": messages,
    }


class _ItemFailed(Exception):
    def __init__(self, result_code: str, error_code: str, description: str) -> None:
        super().__init__(description)
        self.result_code, self.error_code, self.description = result_code, error_code, description


def _items(body: Any) -> list[Mapping[str, Any]]:
    """The items of a well-formed request, or a 400 naming the first problem."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise validation_failed("'items' is required and must be a non-empty array")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise validation_failed(f"items[{index}] must be an object")
        for name in ("recipient", "language"):
            if not isinstance(item.get(name), str) or not item[name].strip():
                raise validation_failed(f"items[{index}].{name} is required and must be a string")
        if item.get("data") is not None and not isinstance(item["data"], dict):
            raise validation_failed(f"items[{index}].data must be an object")
        if item.get("lookup") is not None and not isinstance(item["lookup"], dict):
            raise validation_failed(f"items[{index}].lookup must be an object with scope and field")
    return items


def _resolve(journey: Journey, item: Mapping[str, Any]) -> tuple[int | None, ...]:
    """The profiles the item goes to (None: straight to the recipient's address)."""
    language = str(item["language"]).strip().upper()
    if language not in {str(lang["code"]).upper() for lang in LANGUAGES}:
        codes = ", ".join(str(lang["code"]) for lang in LANGUAGES)
        raise _ItemFailed(
            "ValidationFailed", "ERR_VALIDATION", f"Language '{item['language']}' is not one of {codes}"
        )
    recipient = str(item["recipient"])
    lookup = item.get("lookup")
    if lookup is None:
        if not _EMAIL.fullmatch(recipient):
            message = f"Recipient '{recipient:.60}' is not an e-mail address and no lookup is given"
            raise _ItemFailed("ValidationFailed", "ERR_VALIDATION", message)
        return (None,)
    column = _lookup_column(journey, lookup)
    try:
        value = coerce_value(column, recipient)
    except InvalidValue:
        value = None  # no record can hold it, so none matches
    found = sorted(journey.list.find((column.name,), (value,))) if value is not None else []
    if not found:
        message = f"No profile with {LOOKUP_SCOPE}.{column.name} = '{recipient:.60}'"
        raise _ItemFailed("NotFound", "ERR_NOT_FOUND", message)
    return tuple(found)


def _lookup_column(journey: Journey, lookup: Mapping[str, Any]) -> FieldDef:
    scope, name = lookup.get("scope"), lookup.get("field")
    if not isinstance(scope, str) or scope.strip().upper() != LOOKUP_SCOPE:
        raise _ItemFailed("ValidationFailed", "ERR_VALIDATION", f"Lookup scope must be {LOOKUP_SCOPE}")
    column = journey.list.column(name) if isinstance(name, str) else None
    if column is None:
        message = f"Lookup field {name!r} is not a field of list '{journey.list.api_name}'"
        raise _ItemFailed("ValidationFailed", "ERR_VALIDATION", message)
    return column


def _record(journey: Journey, item: Mapping[str, Any], profile_id: int | None) -> SentMessage:
    profile = dict(journey.list.rows[profile_id]) if profile_id is not None else None
    data = dict(item["data"]) if isinstance(item.get("data"), dict) else None
    message = SentMessage(
        str(uuid.uuid4()), journey.api_name, item["recipient"], item["language"], data, profile_id, profile
    )
    journey.messages.append(message)
    return message
