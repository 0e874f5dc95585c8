"""Reading SMC's answer to a load or delete skeptically: what it proves it holds, what it refused.

A 200 is not proof. Only `Succeeded` is (with counters, when present, that agree), or — for the
rows that `invalid_records` does not name — counters that account for every one of them:
`inserted + updated + duplicates` for a load (`+ not found` under `OnlyUpdate`, where SMC did what
it was asked), `deleted + not found + duplicates` for a delete. Rows nobody can vouch for are
*unconfirmed*: sent again (loads and deletes are idempotent), never reported delivered.
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


def _counter(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(f"number_of_{name}")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _accounted(target: Target, data: Mapping[str, Any]) -> int | None:
    """How many rows the counters say SMC processed, or None when it gave no counters."""
    if target.action == "load":
        names = ["inserted_records", "updated_records", "duplicate_records"]
        if target.import_option == "OnlyUpdate":
            names.append("records_not_found")
    else:
        names = ["deleted_records", "records_not_found", "duplicate_records"]
    values = [_counter(data, name) for name in names]
    if all(value is None for value in values):
        return None
    return sum(value or 0 for value in values)


def _counters_vouch(target: Target, data: Mapping[str, Any], innocent: int, named: int) -> bool:
    accounted = _accounted(target, data)
    failed = _counter(data, "failed_records") or 0
    return accounted is not None and accounted >= innocent and failed <= named


def not_found(target: Target, status: int) -> SmcTargetNotFoundError:
    """The retryable error for a list or segment SMC does not have."""
    count("SmcTargetNotFound")
    return SmcTargetNotFoundError(
        f"SMC has no {target.describe()} ({status})", missing=target.describe(), status=status
    )


def read_answer(target: Target, rows: int, status: int, data: Mapping[str, Any]) -> RowVerdicts:
    """The verdict on each of `rows` rows sent to `target`, from the status and JSON body SMC gave.

    `status` is one the client did not retry (2xx, or a 4xx other than 401/403/408/409/423/425/429).
    Raises an `SmcError` when the call failed as a whole.
    """
    code = str(data.get("result_code") or "")
    if status == 404 or code == "NotFound":
        if target.not_found_is_done:  # a user deletion that finds no list or no rows: done
            return RowVerdicts(rows)
        raise not_found(target, status)
    named = row_errors(data, rows)
    column = missing_column(target, data)
    if column is not None and not named:
        count("SmcTargetNotFound")
        missing = f"column {column} on list {target.list_name}"
        raise SmcTargetNotFoundError(f"SMC has no {missing} ({status})", missing=missing, status=status)
    if not (200 <= status < 300 or status == 400):
        raise SmcRefusedError(f"SMC refused the request ({status}: {error_codes(data)})", status=status)
    innocent = rows - len(named)
    if 200 <= status < 300 and code == "Succeeded" and not named and _accounted(target, data) is None:
        return RowVerdicts(rows)  # SMC's own proof, with no counters to contradict it
    if _counters_vouch(target, data, innocent, len(named)):
        return RowVerdicts(rows, rejected=named)
    if not named and not (200 <= status < 300 and code in ("Succeeded", "PartiallySucceeded", "")):
        # A failure of the call as a whole (`Failed` or `ValidationFailed` naming no row): the same
        # body would be refused again, but nothing shows the events are at fault, so it is retried.
        raise SmcRefusedError(
            f"SMC refused the request ({status} {code}: {error_codes(data)})", status=status
        )
    count("SmcUnconfirmedAnswers")
    failure = SmcUnconfirmedError(
        f"SMC answered {status} {code or 'without a result code'}; its counters do not account for "
        f"{innocent} row(s)",
        status=status,
    )
    unconfirmed = [row for row in range(rows) if row not in named]
    return RowVerdicts(rows, rejected=named, unconfirmed=unconfirmed, failure=failure, resend=True)
