"""identify → the person's profile on the SMC user list: the mapped columns the event carries.

Only the columns whose path is present in the event are sent (an identify never blanks what it
does not carry), so rows are grouped per column set, one SMC call each. Scalars go as they are,
objects and arrays as compact JSON text. Each column is an ordering slot: a stale identify never
overwrites a newer value.
"""

from __future__ import annotations

from typing import Any

from handler import profile_columns, utf16
from handler.events import SegmentEvent, compact_json
from handler.observability import count
from handler.operations import Operation, Target
from handler.ordering import Claim, record_key, stamp
from handler.settings import Profiles, Settings

PART = "profile"
_ABSENT = object()
_targets: dict[tuple[str, tuple[str, ...], str], Target] = {}  # built once per column set


def lookup(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path into the event, or `_ABSENT`."""
    value: Any = raw
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return _ABSENT
        value = value[name]
    return value


def _cell(profiles: Profiles, column: str, value: Any) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else compact_json(value)
    limit = profile_columns.length(profiles.list_name, column)
    if limit and not utf16.fits(text, limit):
        count("ValuesTruncated")
        return utf16.truncate(text, limit)
    return text


def profile_target(profiles: Profiles, columns: tuple[str, ...]) -> Target:
    """The load into the profile list for one set of columns (the key first)."""
    key = (profiles.list_name, columns, profiles.mode)
    target = _targets.get(key)
    if target is None:
        target = _targets[key] = Target(
            "load",
            profiles.list_name,
            key_fields=(profiles.key,),
            fields=(profiles.key, *columns),
            import_option=profiles.mode,
            part=PART,
        )
    return target


def map_profile(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """The profile upsert of an identify: nothing when it carries no mapped column or no userId."""
    profiles = settings.profiles
    if profiles is None or not profiles.fields or not event.user_id:
        return []
    columns: list[str] = []
    row: list[object] = [event.user_id]
    for column, path in profiles.fields:
        value = lookup(event.raw, path)
        if value is not _ABSENT:
            columns.append(column)
            row.append(_cell(profiles, column, value))
    if not columns:
        return []
    names = (settings.organization, profiles.list_name.lower(), profiles.key.lower())
    claim = Claim(
        record_key("profile", *names, event.user_id),
        dict.fromkeys(columns, "set"),
        stamp(event.order_time, event.message_id),
    )
    return [Operation(profile_target(profiles, tuple(columns)), row, [event.index], claim=claim)]
