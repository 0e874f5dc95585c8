"""Segment Engage audiences → static segments of the profile list, kept in sync.

Engage sends membership as `track "Audience Entered"` / `"Audience Exited"` (with
`properties.audience_key`), or as an `identify` whose boolean trait named after the audience
flips; both carry `context.personas` (`computation_class: "audience"`, `computation_key`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from handler.events import AUDIENCE_TRACKS, Method, SegmentEvent
from handler.mappers.membership import membership
from handler.names import is_api_name
from handler.operations import Operation, Target
from handler.settings import Settings

PART = "audience"
# Segments this product creates get the strict form SMC creates api names in: letters, digits and
# `_`, not starting with a digit (a `-` that `is_api_name` tolerates in names people typed is refused).
_NOT_IN_API_NAMES = re.compile(r"[^A-Za-z0-9_]")
_STRICT_API_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_NAME = 100
_HASH_CHARS = 8  # 32 bits of the key: two keys of one space colliding is not a practical risk


def _personas(raw: dict[str, Any]) -> dict[str, Any]:
    context = raw.get("context")
    personas = context.get("personas") if isinstance(context, dict) else None
    return personas if isinstance(personas, dict) else {}


def audience_change(event: SegmentEvent) -> tuple[object, Method] | None:
    """(the audience key, ADD or REMOVE) when the event is an Engage audience change."""
    raw = event.raw
    if event.type == "track":
        method = AUDIENCE_TRACKS.get(str(raw.get("event")))
        if method is None:
            return None
        properties = raw.get("properties") or {}
        return properties.get("audience_key") or _personas(raw).get("computation_key"), method
    if event.type == "identify":
        personas = _personas(raw)
        key = personas.get("computation_key")
        if personas.get("computation_class") != "audience" or not isinstance(key, str):
            return None
        flag = (raw.get("traits") or {}).get(key)
        if isinstance(flag, bool):  # another trait of a computed identify is no membership change
            return key, "ADD" if flag else "REMOVE"
    return None


def segment_name(audience_key: object) -> str | None:
    """The static segment's api name for an audience key (SMC's api-name rules), or None if the
    key cannot become one. Keys are immutable in Engage, so the name is stable.

    A key that is a valid api name already is used as it is. Any other is normalised (characters
    other than letters, digits and `_` become `_`, a leading digit gets a `_` in front, cut to
    fit) and, since normalising loses what told keys apart (`gold-tier` / `gold tier`, two long
    keys sharing their first 100 characters), suffixed with `_` and a hash of the exact key."""
    if not isinstance(audience_key, str):
        return None
    if _STRICT_API_NAME.fullmatch(audience_key):
        return audience_key
    name = _NOT_IN_API_NAMES.sub("_", audience_key)
    if name[:1].isdigit():
        name = "_" + name
    if not name.strip("_"):
        return None  # nothing of the key survives: a name of underscores and a hash says nothing
    digest = hashlib.sha256(audience_key.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    name = f"{name[: MAX_NAME - _HASH_CHARS - 1]}_{digest}"
    return name if is_api_name(name) else None


def map_audience(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """The membership change an audience event asks for (none for other events)."""
    profiles = settings.profiles
    change = audience_change(event) if profiles is not None and profiles.audiences else None
    if profiles is None or change is None:
        return []
    key, method = change
    segment = segment_name(key)
    refused = None
    if segment is None:
        refused = "the audience key cannot be an SMC segment api name (letters, digits or _)"
    elif not event.user_id:
        refused = "an audience membership needs userId (the profile key)"
    if refused is not None or segment is None:
        target = Target("load", profiles.list_name, (profiles.key,), (profiles.key,), part=PART)
        return [Operation(target, [], [event.index], refused=refused)]
    return [
        membership(
            event, settings, profiles.list_name, segment, profiles.key, method, part=PART, managed=True
        )
    ]
