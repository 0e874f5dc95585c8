"""Reading SMC's organization, lists, columns, segments and transactional journeys, and comparing
columns with `handler.schema`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from handler.cli.common import CliError, Smc, smc_errors
from handler.schema import Column

SEGMENT_PAGE_SIZE = 100  # segments asked for per GET …/segments call
MAX_SEGMENT_PAGES = 100


def list_path(list_name: str) -> str:
    """`/lists/{list}` below the organization, the name quoted like the client quotes it."""
    return f"/lists/{quote(list_name, safe='')}"


def describe(field_: dict[str, Any]) -> str:
    """`Text(100)`, `LongText`, `DateTime`… as SMC describes a column."""
    kind = str(field_.get("data_type") or "?")
    length = field_.get("length")
    return f"{kind}({length})" if kind == "Text" and length else kind


def wanted(column: Column) -> str:
    """How the destination's schema describes a column."""
    return f"Text({column.length})" if column.data_type == "Text" else column.data_type


def organization_found(smc: Smc) -> dict[str, Any]:
    """The organization's details (`name`, `languages`…); `CliError` unless SMC knows it."""
    status, body = smc.get("")
    org = smc.settings.organization
    if status == 404:
        raise CliError(
            f"SMC has no organization '{org}'",
            "set SMC_ORGANIZATION (or --organization) to the organization's name as SMC shows it",
        )
    if status != 200:
        raise CliError(f"SMC answered {status} to GET /organizations/{org}: {smc_errors(body)}", "")
    return body


def _details(smc: Smc, path: str, what: str) -> dict[str, Any] | None:
    status, body = smc.get(path)
    if status == 404:
        return None
    if status != 200:
        raise CliError(f"SMC answered {status} to GET {what}: {smc_errors(body)}", "")
    return body


def get_list(smc: Smc, list_name: str) -> dict[str, Any] | None:
    """The list's details, or None when SMC has no such list."""
    return _details(smc, list_path(list_name), f"list '{list_name}'")


def get_journey(smc: Smc, api_name: str) -> dict[str, Any] | None:
    """The transactional journey's details, or None when SMC has no such journey."""
    return _details(smc, f"/journeys/transactional/{quote(api_name, safe='')}", f"journey '{api_name}'")


def get_fields(smc: Smc, list_name: str) -> list[dict[str, Any]]:
    """The list's columns (`GET /lists/{list}/fields`)."""
    status, body = smc.get(list_path(list_name) + "/fields")
    fields = body.get("fields")
    if status != 200 or not isinstance(fields, list):
        raise CliError(f"SMC answered {status} to GET fields of '{list_name}': {smc_errors(body)}", "")
    return [f for f in fields if isinstance(f, dict)]


def get_segments(smc: Smc, list_name: str) -> list[dict[str, Any]]:
    """Every segment of the list (`GET /lists/{list}/segments`), page by page (`skip`/`take`).

    SMC answers one page at a time: a page shorter than asked for is the last one.
    """
    found: list[dict[str, Any]] = []
    for _ in range(MAX_SEGMENT_PAGES):
        page_query = {"skip": str(len(found)), "take": str(SEGMENT_PAGE_SIZE)}
        status, body = smc.get(list_path(list_name) + "/segments", params=page_query)
        page = body.get("segments")
        if status != 200 or not isinstance(page, list):
            raise CliError(f"SMC answered {status} to GET segments of '{list_name}': {smc_errors(body)}", "")
        found.extend(s for s in page if isinstance(s, dict))
        if len(page) < SEGMENT_PAGE_SIZE:
            return found
    # A server that ignores `skip` would answer full pages for ever.
    raise CliError(
        f"list '{list_name}' has more than {MAX_SEGMENT_PAGES * SEGMENT_PAGE_SIZE} segments, or SMC "
        "ignores skip/take",
        "check the segment in SMC's interface",
    )


def incompatibility(column: Column, existing: dict[str, Any]) -> str | None:
    """Why an existing SMC column cannot hold what the destination writes into it, or None."""
    kind = existing.get("data_type")
    length = existing.get("length") or 0
    have, want = describe(existing), wanted(column)
    if column.data_type == "Text":
        if kind == "Text" and length and length < column.length:
            return f"is {have}: shorter than the {column.length} characters the destination may write"
        if kind not in ("Text", "LongText"):
            return f"is {have}, needs {want} or LongText"
    elif column.data_type == "LongText":
        if not (kind == "LongText" or (kind == "Text" and not length)):
            return f"is {have}, needs LongText (JSON of any length)"
    elif kind != column.data_type:
        return f"is {have}, needs {want}"
    if existing.get("allow_null") is False and column.allow_null:
        return "does not allow null, but the destination leaves it empty for some events"
    return None


@dataclass(slots=True)
class ColumnReport:
    """How a list's columns compare with the columns the destination writes."""

    missing: list[Column] = field(default_factory=list)
    compatible: list[Column] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (finding, fix)


def compare_columns(list_name: str, required: Sequence[Column], fields: list[dict[str, Any]]) -> ColumnReport:
    """Missing columns, columns of an incompatible type/length/nullability, and extra NOT NULL columns."""
    by_name = {str(f.get("name", "")).upper(): f for f in fields}
    report = ColumnReport()
    for column in required:
        existing = by_name.pop(column.name.upper(), None)
        if existing is None:
            report.missing.append(column)
            continue
        reason = incompatibility(column, existing)
        if reason is None:
            report.compatible.append(column)
        else:
            report.problems.append(
                (
                    f"column {list_name}.{column.name} {reason}",
                    f"in SMC, re-create {column.name} as {wanted(column)}"
                    + (" allowing null" if column.allow_null else "")
                    + " (provision never changes an existing column)",
                )
            )
    for name, extra in sorted(by_name.items()):
        if extra.get("allow_null") is False:
            report.problems.append(
                (
                    f"column {list_name}.{extra.get('name', name)} is NOT NULL but the destination never "
                    "fills it: SMC would refuse every new row",
                    f"allow null on {extra.get('name', name)} in SMC",
                )
            )
    return report
