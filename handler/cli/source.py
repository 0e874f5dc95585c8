"""Reading a replay file into numbered events.

Accepted: a JSON document (one event, an array of events, a Tracking API `{"batch": [...]}`) or
NDJSON (one of those per line). Wrappers are unwrapped wherever they appear: the destination's own
queue messages (`{"v": 1, "events": [...]}`, e.g. from its dead-letter queue), SQS messages or
records whose `Body`/`body` holds one of those as text, and `aws sqs receive-message` output
(`{"Messages": [...]}`). Each event gets a position (0, 1, …) that stays the same as long as the
file does: the checkpoint records positions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_UNWRAP_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Item:
    """One event of the file; `problem` is set when its line could not be read (it is then rejected)."""

    position: int
    line: int  # 1-based line of the file it came from
    event: Any = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """The file's events, in order, and the digest that ties a checkpoint to this exact content."""

    path: Path
    sha256: str
    items: list[Item]


def _unwrap(value: Any, depth: int = 0) -> list[Any]:
    if depth >= MAX_UNWRAP_DEPTH:
        return [value]
    if isinstance(value, list):
        return [event for element in value for event in _unwrap(element, depth + 1)]
    if not isinstance(value, dict) or "type" in value:
        return [value]
    if isinstance(value.get("batch"), list):
        return _unwrap(value["batch"], depth + 1)
    if isinstance(value.get("events"), list) and "v" in value:
        return _unwrap(value["events"], depth + 1)
    if isinstance(value.get("Messages"), list):
        return _unwrap(value["Messages"], depth + 1)
    body = value.get("Body", value.get("body"))
    if isinstance(body, str):
        try:
            return _unwrap(json.loads(body), depth + 1)
        except ValueError:
            return [value]  # rejected by validation as it is
    return [value]


def read_source(path: Path) -> Source:
    """Read and number every event of `path`; raise `OSError` (unreadable) or `ValueError` (broken array)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    items: list[Item] = []
    try:
        document = json.loads(text) if text.strip() else []
    except ValueError as exc:
        if text.lstrip().startswith("["):  # an array is one document: reading it by lines makes no sense
            raise ValueError(f"{path} is a JSON array but not valid JSON ({exc})") from None
        document = None
    if document is not None:
        for event in _unwrap(document):
            items.append(Item(len(items), 1, event))  # one document: every event is "line 1"
        return Source(path, digest, items)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            items.append(Item(len(items), number, problem=f"line {number} is not valid JSON ({exc.msg})"))
            continue
        for event in _unwrap(value):
            items.append(Item(len(items), number, event))
    return Source(path, digest, items)
