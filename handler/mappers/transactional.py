"""track → an SMC transactional journey (`SMC_TRANSACTIONAL_EVENTS`), sent to the profile whose
key is the event's userId (lookup on the profile list's key column)."""

from __future__ import annotations

import re
from typing import Any

from handler.events import SegmentEvent
from handler.operations import Operation, Target
from handler.settings import Profiles, Settings

PART = "transactional message"
_LANGUAGE_PART = re.compile(r"[A-Za-z]{2,8}")


def _language(raw: dict[str, Any], profiles: Profiles) -> str | None:
    """The event's `properties.language`, else its `context.locale`'s language, else the setting."""
    properties = raw.get("properties") or {}
    context = raw.get("context") or {}
    for candidate in (properties.get("language"), context.get("locale")):
        if isinstance(candidate, str):
            match = _LANGUAGE_PART.match(candidate.strip())
            if match:
                return match.group(0).upper()
    return profiles.language.upper() or None


def map_transactional(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """The send a track event triggers, if its name has a journey."""
    profiles = settings.profiles
    journey = profiles.journey_for(str(event.raw["event"])) if profiles is not None else None
    if profiles is None or journey is None:
        return []
    target = Target("send", journey, key_fields=(), fields=(), part=PART)
    language = _language(event.raw, profiles)
    if not event.user_id:
        return [Operation(target, [], [event.index], refused="a transactional message needs userId")]
    if language is None:
        refused = "no language: properties.language, context.locale or SMC_TRANSACTIONAL_LANGUAGE"
        return [Operation(target, [], [event.index], refused=refused)]
    properties = event.raw.get("properties")
    item = {
        "recipient": event.user_id,
        "language": language,
        "data": properties if isinstance(properties, dict) else {},
        "lookup": {"scope": "MASTER", "field": profiles.key},
    }
    return [Operation(target, [item], [event.index])]
