"""`check`'s part for profiles, audiences and transactional messages (`SMC_PROFILE_*` set).

The profile list, its key and every mapped column must exist; types `check` can see to clash
with what the destination sends are reported; each transactional journey must exist; and the
static segments of the profile list (the audiences' segments) are listed.
"""

from __future__ import annotations

from handler.cli.common import Findings, Smc
from handler.cli.lists import get_fields, get_list, get_segments
from handler.settings import Profiles

# What a mapped path must hold for a column of each type (scalars are sent as they are).
_HOLDS = {
    "Boolean": "true or false",
    "Numeric": "a number",
    "Long": "a whole number",
    "Float": "a number",
    "Date": "an ISO 8601 date",
    "DateTime": "an ISO 8601 date-time",
}
_TEXT = ("Text", "LongText")


def check_profiles(smc: Smc, profiles: Profiles, findings: Findings) -> None:
    """One line per finding about the profile list, its columns, journeys and audience segments."""
    name = profiles.list_name
    details = get_list(smc, name)
    if details is None:
        findings.fail(
            f"profile list '{name}' does not exist",
            "set SMC_PROFILE_LIST to the api name of the user list that holds the profiles",
        )
        return
    if details.get("type") not in (None, "Userlist"):
        findings.warn(f"profile list '{name}' is a {details.get('type')}; profiles live on a Userlist")
    columns = {str(f.get("name", "")).upper(): f for f in get_fields(smc, name)}
    key = columns.get(profiles.key.upper())
    if key is None:
        findings.fail(f"profile list '{name}' has no key column {profiles.key}", "correct SMC_PROFILE_KEY")
    elif key.get("data_type") not in _TEXT:
        findings.warn(f"key column {name}.{profiles.key} is {key.get('data_type')}: Segment userIds are text")
    else:
        findings.ok(f"profile list '{name}' keyed on {profiles.key}")
    for column, path in profiles.fields:
        _check_column(findings, name, column, ".".join(path), columns.get(column.upper()))
    for event, journey in profiles.transactional:
        status, _ = smc.get(f"/journeys/transactional/{journey}")
        if status == 200:
            findings.ok(f"transactional journey '{journey}' exists (for '{event}')")
        else:
            findings.fail(
                f"transactional journey '{journey}' (for '{event}') does not exist ({status})",
                "create it in SMC, or correct SMC_TRANSACTIONAL_EVENTS",
            )
    if profiles.transactional and not profiles.language:
        findings.warn(
            "SMC_TRANSACTIONAL_LANGUAGE is empty: a transactional event without properties.language "
            "or context.locale cannot be sent",
            "set SMC_TRANSACTIONAL_LANGUAGE, e.g. EN",
        )
    if profiles.audiences:
        static = sorted(
            str(s.get("api_name")) for s in get_segments(smc, name) if s.get("segment_type") == "Static"
        )
        shown = ", ".join(static[:20]) + (f" and {len(static) - 20} more" if len(static) > 20 else "")
        findings.ok(f"audience segments on '{name}': {shown or 'none yet (created on the first member)'}")


def _check_column(
    findings: Findings, list_name: str, column: str, path: str, field: dict[str, object] | None
) -> None:
    if field is None:
        findings.fail(
            f"profile list '{list_name}' has no column {column} (mapped from {path})",
            f"add the column in SMC, or remove {column} from SMC_PROFILE_FIELDS",
        )
        return
    kind = str(field.get("data_type"))
    if kind in _HOLDS:
        findings.warn(f"column {list_name}.{column} is {kind}: {path} must hold {_HOLDS[kind]}")
    elif kind == "Text" and field.get("length"):
        findings.ok(
            f"column {list_name}.{column} is Text({field.get('length')}) for {path}; longer values are cut"
        )
    else:
        findings.ok(f"column {list_name}.{column} is {kind} for {path}")
