"""The most common reasons events were rejected or retried, from the functions' logs (CloudWatch
Logs Insights over the `event not delivered` lines of handler/reporting.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

TOP = 10
QUERY = f"""filter message = "event not delivered" and outcome in ["rejected", "retried"]
| stats count(*) as events by outcome, reason
| sort events desc
| limit {TOP}"""
_POLL_S = 1.0
_DONE = ("Complete", "Failed", "Cancelled", "Timeout", "Unknown")
_DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")


@dataclass(frozen=True, slots=True)
class Reason:
    """How many events of one outcome were logged with one reason."""

    events: int
    outcome: str
    reason: str


class ReasonsUnavailable(Exception):
    """Logs Insights could not say: the message is a one-line note for the operator."""


def parse_results(results: Sequence[Sequence[Mapping[str, object]]]) -> list[Reason]:
    """Logs Insights rows (`[{field, value}, …]`) as reasons; `ReasonsUnavailable` when the rows
    do not carry the counts (a service that does not run `stats`)."""
    reasons = []
    for row in results:
        fields = {str(cell.get("field")): str(cell.get("value", "")) for cell in row}
        if "events" not in fields or "outcome" not in fields:
            raise ReasonsUnavailable(
                "Logs Insights answered without counts: it did not run the query's `stats`"
            )
        reasons.append(Reason(int(float(fields["events"])), fields["outcome"], fields.get("reason") or "-"))
    return reasons


def top_reasons(
    logs: CloudWatchLogsClient, log_groups: list[str], start: datetime, end: datetime, timeout_s: float
) -> list[Reason]:
    """Run the query over `log_groups` for [start, end]; `ReasonsUnavailable` says why not."""
    try:
        query_id = logs.start_query(
            logGroupNames=log_groups,
            startTime=int(start.timestamp()),
            endTime=int(end.timestamp()),
            queryString=QUERY,
        )["queryId"]
        deadline = time.monotonic() + timeout_s
        while True:
            answer = logs.get_query_results(queryId=query_id)
            if answer["status"] in _DONE:
                break
            if time.monotonic() > deadline:
                logs.stop_query(queryId=query_id)
                raise ReasonsUnavailable(
                    f"Logs Insights gave no answer within {timeout_s:g} s (--logs-timeout)"
                )
            time.sleep(_POLL_S)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _DENIED:
            raise ReasonsUnavailable(
                "not allowed to query the logs (logs:StartQuery and logs:GetQueryResults)"
            ) from None
        if code == "ResourceNotFoundException":
            raise ReasonsUnavailable(f"log group not found: {', '.join(log_groups)}") from None
        raise ReasonsUnavailable(f"Logs Insights answered {code or exc}") from None
    except BotoCoreError as exc:
        raise ReasonsUnavailable(f"Logs Insights unreachable ({type(exc).__name__})") from None
    if answer["status"] != "Complete":
        raise ReasonsUnavailable(f"the Logs Insights query ended {answer['status']}")
    return parse_results(answer["results"])
