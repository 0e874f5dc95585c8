"""`check`'s part for profiles, audiences and transactional messages (`SMC_PROFILE_*` set): the
user list, its key and mapped columns, the audience segments, the journeys and their language.

Read only. The user list belongs to the customer, so every fix is theirs to make in SMC or in the
settings: `provision` never creates or alters a user list.
"""

from __future__ import annotations

from typing import Any

from handler.cli.common import Findings, Smc
from handler.cli.lists import describe, get_fields, get_journey, get_list, get_segments
from handler.settings import (
    SMC_PROFILE_FIELDS,
    SMC_PROFILE_KEY,
    SMC_PROFILE_LIST,
    SMC_TRANSACTIONAL_EVENTS,
    SMC_TRANSACTIONAL_LANGUAGE,
    Profiles,
)

# What a mapped path must hold for SMC to take it into a column of each non-text type: the
# destination sends scalars as they are and objects or arrays as compact JSON text.
MUST_HOLD = {
    "Boolean": "true or false",
    "Numeric": "a number",
    "Float": "a number",
    "Long": "a whole number",
    "Date": "an ISO 8601 date",
    "DateTime": "an ISO 8601 date and time",
}
KEY_TYPES = ("Text", "LongText")  # Segment user ids are strings
SEGMENTS_NAMED = 20  # the audience segment line names at most this many
_NEVER_ALTERED = "provision never alters a user list"


def check_profiles(smc: Smc, profiles: Profiles, findings: Findings, organization: dict[str, Any]) -> None:
    """One line per finding about the profile list, its columns, audience segments, journeys and
    language; `organization` is SMC's answer to GET /organizations/{org}."""
    _check_profile_list(smc, findings, profiles)
    _check_journeys(smc, findings, profiles)
    _check_language(findings, profiles, organization)


def _check_profile_list(smc: Smc, findings: Findings, profiles: Profiles) -> None:
    name = profiles.list_name
    details = get_list(smc, name)
    if details is None:
        findings.fail(
            f"profile list '{name}' does not exist",
            f"set {SMC_PROFILE_LIST} to the api name of the user list that holds the profiles "
            "(provision never creates a user list)",
        )
        return
    kind = details.get("type")
    if kind not in (None, "Userlist"):
        findings.warn(
            f"profile list '{name}' is a {kind}; profiles and audience segments belong on a Userlist",
            f"set {SMC_PROFILE_LIST} to a Userlist",
        )
    else:
        findings.ok(f"profile list '{name}' exists (Userlist)")
    columns = {str(f.get("name", "")).upper(): f for f in get_fields(smc, name)}
    _check_key(findings, name, profiles.key, columns.get(profiles.key.upper()))
    for column, path in profiles.fields:
        _check_mapped(findings, name, column, ".".join(path), columns.get(column.upper()))
    if profiles.audiences:
        _show_segments(smc, findings, name)


def _check_key(findings: Findings, list_name: str, key: str, existing: dict[str, Any] | None) -> None:
    if existing is None:
        findings.fail(
            f"profile list '{list_name}' has no key column {key}",
            f"set {SMC_PROFILE_KEY} to the column that holds Segment's userId, or add {key} as Text "
            f"to '{list_name}' in SMC ({_NEVER_ALTERED})",
        )
        return
    kind = str(existing.get("data_type"))
    if kind not in KEY_TYPES:
        holds = MUST_HOLD.get(kind, f"a {kind}")
        findings.warn(
            f"key column {list_name}.{key} is {describe(existing)}, not Text or LongText: only Segment "
            f"user ids that are {holds} can be matched",
            f"set {SMC_PROFILE_KEY} to a Text column",
        )
    else:
        findings.ok(f"key column {list_name}.{key} is {describe(existing)}: profiles match on userId")


def _check_mapped(
    findings: Findings, list_name: str, column: str, path: str, existing: dict[str, Any] | None
) -> None:
    if existing is None:
        findings.fail(
            f"column {list_name}.{column} is missing ({SMC_PROFILE_FIELDS} maps {path} to it)",
            f"add {column} to list '{list_name}' in SMC, or remove it from {SMC_PROFILE_FIELDS} "
            f"({_NEVER_ALTERED})",
        )
        return
    kind, length, shown = existing.get("data_type"), existing.get("length"), describe(existing)
    if kind in MUST_HOLD:
        holds = MUST_HOLD[str(kind)]
        findings.warn(
            f"column {list_name}.{column} is {shown}: {path} must hold {holds}, "
            "else SMC refuses that profile's update",
            f"map a path that holds {holds}, or make {column} Text in SMC",
        )
    elif kind == "Text" and length:
        findings.info(
            f"column {list_name}.{column} is {shown} <- {path}: longer values are cut to {length} characters"
        )
    else:
        findings.ok(f"column {list_name}.{column} is {shown} <- {path}")


def _show_segments(smc: Smc, findings: Findings, list_name: str) -> None:
    static = sorted(
        (str(s.get("api_name")) for s in get_segments(smc, list_name) if s.get("segment_type") == "Static"),
        key=str.lower,
    )
    if not static:
        findings.info(
            f"no audience segments on '{list_name}' yet: the destination creates a static segment "
            "for each Engage audience it is sent"
        )
        return
    named = ", ".join(static[:SEGMENTS_NAMED])
    if len(static) > SEGMENTS_NAMED:
        named += f" and {len(static) - SEGMENTS_NAMED} more"
    findings.info(f"audience segments on '{list_name}' ({len(static)} static): {named}")


def _check_journeys(smc: Smc, findings: Findings, profiles: Profiles) -> None:
    events_by_journey: dict[str, list[str]] = {}
    for event, journey in profiles.transactional:
        events_by_journey.setdefault(journey, []).append(event)
    for journey, events in events_by_journey.items():
        tracks = ", ".join(f"'{event}'" for event in events)
        if get_journey(smc, journey) is None:
            findings.fail(
                f"transactional journey '{journey}' does not exist (for track {tracks})",
                f"create a transactional journey with api name '{journey}' in SMC, "
                f"or correct {SMC_TRANSACTIONAL_EVENTS}",
            )
        else:
            findings.ok(f"transactional journey '{journey}' exists (for track {tracks})")


def _check_language(findings: Findings, profiles: Profiles, organization: dict[str, Any]) -> None:
    if not profiles.transactional:
        return
    languages = organization.get("languages")
    codes = [str(lang.get("code")) for lang in languages or [] if isinstance(lang, dict) and lang.get("code")]
    choices = f" ({', '.join(codes)})" if codes else ""
    if not profiles.language:
        findings.warn(
            f"{SMC_TRANSACTIONAL_EVENTS} is set but {SMC_TRANSACTIONAL_LANGUAGE} is empty: a transactional "
            "event without properties.language or context.locale cannot be sent",
            f"set {SMC_TRANSACTIONAL_LANGUAGE} to one of the organization's languages{choices}",
        )
    elif codes and profiles.language.upper() not in {code.upper() for code in codes}:
        # A warning, not a failure: SMC documents the language only as a code, without the list.
        findings.warn(
            f"{SMC_TRANSACTIONAL_LANGUAGE} {profiles.language} is not one of the organization's "
            f"languages{choices}: SMC may refuse those sends",
            f"set {SMC_TRANSACTIONAL_LANGUAGE} to one of them",
        )
    else:
        findings.ok(f"transactional messages default to language {profiles.language}")
