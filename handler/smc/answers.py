"""Reading SMC's answer to a load or delete skeptically: what it proves it holds, what it refused.

A 200 is not proof, and no other status ever is. Only a 2xx can vouch for rows, and only with
`result_code` `Succeeded` (no rows named, counters absent or adding up), or `PartiallySucceeded` /
`Failed` naming rows, for the other rows, when the counters add up. SMC's counters count rows of
the request (the Swagger's examples add up to the rows sent), so they must add up *exactly*:

    settled == rows sent - rows named, and failed (when given) == rows named

where `settled` is `inserted + updated + duplicates` for a load (`+ not found` under
`OnlyUpdate`, where SMC did what it was asked) and `deleted + not found + duplicates` for a
delete; every other counter must be 0. A duplicate is a row whose key another row of the same
request carries: SMC applied one of them (its `deduplication` option), so it holds that key, and a
duplicate counts only beside at least one row SMC applied. A counter that is negative, not an
integer or larger than the rows sent makes the whole answer unconfirmed.

Named rows are rejected only by an answer that is consistent about them (a failure or partial
code, counters that leave room for them). Rows nobody can vouch for are *unconfirmed*: sent again
(loads and deletes are idempotent), never reported delivered. An unknown or missing result code
proves nothing; a failure code naming no row is a refusal of the call (retried).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handler.errors import SmcError, SmcRefusedError, SmcTargetNotFoundError, SmcUnconfirmedError
from handler.observability import count
from handler.operations import Target

# Result codes after which SMC may succeed on a second try: the client retries them like a 503.
TRANSIENT_RESULT_CODES = frozenset({"ServiceUnavailable", "InternalServerError"})
# How SMC's validation errors say that a column is not on the list.
_MISSING = re.compile(
    r"does not exist|doesn't exist|not exist|not found|unknown|invalid field", re.IGNORECASE
)


@dataclass(slots=True)
class RowVerdicts:
    """Per-row result of one call: rows not rejected and not unconfirmed are delivered."""

    rows: int
    rejected: dict[int, str] = field(default_factory=dict)
    unconfirmed: list[int] = field(default_factory=list)
    failure: SmcError | None = None  # why the unconfirmed rows are unsettled
    # The answer named rows: the other rows may well land when sent again without them.
    resend: bool = False

    def delivered(self) -> list[int]:
        """The rows SMC's answer proves it holds."""
        unsettled = set(self.unconfirmed) | self.rejected.keys()
        return [row for row in range(self.rows) if row not in unsettled]


def error_codes(data: Mapping[str, Any]) -> str:
    """SMC's request-level error codes (at most five), for logs and reasons; never row values."""
    errors = data.get("errors") or []
    codes = [str(e.get("error_code"))[:40] for e in errors if isinstance(e, dict) and e.get("error_code")]
    return ",".join(codes[:5]) or str(data.get("result_code") or "no detail")[:40]


def row_errors(data: Mapping[str, Any], rows: int) -> dict[int, str]:
    """`invalid_records` by row index (0-based, as sent), each as SMC's code and field name."""
    found: dict[int, str] = {}
    for record in data.get("invalid_records") or []:
        if not isinstance(record, dict):
            continue
        index = record.get("record_index")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < rows:
            code = str(record.get("validation_code") or "Invalid")[:40]
            field_name = str(record.get("field_name") or "")[:64]
            found.setdefault(index, f"SMC {code}" + (f" on {field_name}" if field_name else ""))
    return found


def missing_column(target: Target, data: Mapping[str, Any]) -> str | None:
    """The column of `target` that SMC's request-level errors say the list lacks, if any."""
    texts = [
        f"{e.get('error_code', '')} {e.get('description', '')} {e.get('message', '')}"
        for e in data.get("errors") or []
        if isinstance(e, dict)
    ]
    for text in texts:
        if not _MISSING.search(text):
            continue
        for name in target.fields:
            if re.search(rf"(?<![A-Za-z0-9_-]){re.escape(name)}(?![A-Za-z0-9_-])", text, re.IGNORECASE):
                return name
    return None


# Every counter SMC's load and delete answers carry (`number_of_<name>`).
_COUNTERS = (
    "inserted_records",
    "updated_records",
    "failed_records",
    "duplicate_records",
    "records_not_found",
    "deleted_records",
)
# Codes under which `invalid_records` may name rows SMC refused.
_ROW_FAILURE_CODES = frozenset({"PartiallySucceeded", "Failed", "ValidationFailed"})
# Codes that refuse the call as a whole when they name no row.
_CALL_FAILURE_CODES = frozenset({"Failed", "ValidationFailed"})


def _counters(data: Mapping[str, Any], rows: int) -> dict[str, int] | str:
    """The counters present (absent or null ones are left out), or why they cannot be believed."""
    found: dict[str, int] = {}
    for name in _COUNTERS:
        value = data.get(f"number_of_{name}")
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= rows:
            # One impossible counter taints the others: nothing in this answer can be trusted.
            return f"number_of_{name} {str(value)[:20]!r} is impossible for {rows} row(s)"
        found[name] = value
    return found


def _settling(target: Target) -> tuple[str, ...]:
    """The counters that settle a row for `target`'s operation (duplicates last)."""
    applied: tuple[str, ...]
    if target.action == "load":
        applied = ("inserted_records", "updated_records")
        if target.import_option == "OnlyUpdate":
            applied += ("records_not_found",)
    else:
        applied = ("deleted_records", "records_not_found")
    return (*applied, "duplicate_records")


@dataclass(frozen=True, slots=True)
class _Tally:
    present: bool  # any counter that settles rows was given
    settled: int
    failed: int | None
    other: int  # counters that have no business in this operation's answer
    duplicates_orphaned: bool  # duplicates with no applied row they could be duplicates of


def _tally(target: Target, counters: Mapping[str, int]) -> _Tally:
    settling = _settling(target)
    applied = sum(counters.get(name, 0) for name in settling[:-1])
    duplicates = counters.get("duplicate_records", 0)
    other = sum(
        value for name, value in counters.items() if name not in settling and name != "failed_records"
    )
    return _Tally(
        present=any(name in counters for name in settling),
        settled=applied + duplicates,
        failed=counters.get("failed_records"),
        other=other,
        duplicates_orphaned=duplicates > 0 and applied == 0,
    )


def _adds_up(tally: _Tally, rows: int, named: int) -> bool:
    """The counters settle exactly the rows not named, and fail exactly the named ones."""
    return (
        tally.settled == rows - named
        and tally.failed in (None, named)
        and tally.other == 0
        and not tally.duplicates_orphaned
    )


def _leaves_room(tally: _Tally, rows: int, named: int) -> bool:
    """The counters agree that the named rows failed: at least that many failed, and no more rows
    settled or failed than were sent."""
    failed = named if tally.failed is None else tally.failed
    return (
        failed >= named
        and tally.settled + failed <= rows
        and tally.other == 0
        and not tally.duplicates_orphaned
    )


def not_found(target: Target, status: int) -> SmcTargetNotFoundError:
    """The retryable error for a list, segment or endpoint SMC does not have."""
    count("SmcTargetNotFound")
    return SmcTargetNotFoundError(
        f"SMC has no {target.describe()} ({status})", missing=target.describe(), status=status
    )


def _says_segment_missing(target: Target, data: Mapping[str, Any]) -> bool:
    """Whether SMC's errors say that `target`'s segment (not its list, not the path) is missing."""
    if target.segment is None:
        return False
    pattern = re.compile(rf"\bsegment\W+{re.escape(target.segment)}\b", re.IGNORECASE)
    return any(
        isinstance(e, dict) and pattern.search(f"{e.get('description', '')} {e.get('message', '')}")
        for e in data.get("errors") or []
    )


def _unconfirmed(
    rows: int, status: int, code: str, why: str, rejected: dict[int, str] | None = None
) -> RowVerdicts:
    count("SmcUnconfirmedAnswers")
    rejected = rejected or {}
    failure = SmcUnconfirmedError(
        f"SMC answered {status} {code or 'without a result code'}; {why}", status=status
    )
    unconfirmed = [row for row in range(rows) if row not in rejected]
    return RowVerdicts(rows, rejected=rejected, unconfirmed=unconfirmed, failure=failure, resend=True)


def read_answer(target: Target, rows: int, status: int, data: Mapping[str, Any]) -> RowVerdicts:
    """The verdict on each of `rows` rows sent to `target`, from the status and JSON body SMC gave.

    `status` is one the client did not retry (2xx, or a 4xx other than 401/403/408/409/423/425/429).
    Raises an `SmcError` when the call failed as a whole.
    """
    raw_code = data.get("result_code")
    code = raw_code[:40] if isinstance(raw_code, str) else ""
    success = 200 <= status < 300
    counters = _counters(data, rows)
    if status == 404 or code == "NotFound":
        # Only the answer itself can say that the *records* are absent (a delete then has nothing
        # left to do); a 404 alone may mean a missing list or a wrong path, which an admin fixes.
        if target.action == "delete" and isinstance(counters, dict):
            tally = _tally(target, counters)
            if tally.present and counters.get("records_not_found") == rows and _adds_up(tally, rows, 0):
                return RowVerdicts(rows)
        if target.absent_segment_is_done and _says_segment_missing(target, data):
            return RowVerdicts(rows)  # nobody is a member of a segment that does not exist
        raise not_found(target, status)
    named = row_errors(data, rows)
    column = missing_column(target, data)
    if column is not None and not named:
        count("SmcTargetNotFound")
        missing = f"column {column} on list {target.list_name}"
        raise SmcTargetNotFoundError(f"SMC has no {missing} ({status})", missing=missing, status=status)
    if not (success or status == 400) or (not named and (status == 400 or code in _CALL_FAILURE_CODES)):
        # A failure of the call as a whole naming no row: the same body would be refused again,
        # but nothing shows the events are at fault, so it is retried, never rejected.
        raise SmcRefusedError(
            f"SMC refused the request ({status}{' ' + code if code else ''}: {error_codes(data)})",
            status=status,
        )
    if isinstance(counters, str):
        return _unconfirmed(rows, status, code, counters)
    tally = _tally(target, counters)
    if not named:
        if success and code == "Succeeded":
            if not counters or _adds_up(tally, rows, 0):
                return RowVerdicts(rows)  # SMC's own proof, with counters (if any) that agree
            return _unconfirmed(rows, status, code, f"its counters do not add up to {rows} row(s)")
        return _unconfirmed(rows, status, code, "that proves no row")
    if code not in _ROW_FAILURE_CODES or not _leaves_room(tally, rows, len(named)):
        # Rows named by an answer that contradicts itself (`Succeeded`, counters that say SMC took
        # them, impossible totals) are not rejected: Segment would drop them on its word.
        return _unconfirmed(rows, status, code, f"its counters contradict the {len(named)} row(s) it names")
    innocent = rows - len(named)
    if innocent == 0 or (success and tally.present and _adds_up(tally, rows, len(named))):
        return RowVerdicts(rows, rejected=named)
    return _unconfirmed(
        rows, status, code, f"its counters do not account for {innocent} row(s)", rejected=named
    )
