"""Recording a settled report: outcome metrics and per-event log lines, the same for every entry."""

from __future__ import annotations

from handler.observability import count, count_per_type, logger
from handler.outcomes import Report

MAX_OUTCOME_LOG_LINES = 200  # per request; the summary line always carries the totals


def record_outcomes(report: Report, status: int | None = None, **summary: object) -> None:
    """Count every event's outcome (and per type received) and log one summary line."""
    totals = report.counts()
    per_type: dict[str, int] = {}
    for result in report.results:
        per_type[result.event_type] = per_type.get(result.event_type, 0) + 1
    count_per_type("EventsReceived", per_type)
    count("EventsReceived", len(report.results))
    for outcome, number in totals.items():
        count(f"Events{outcome.capitalize()}", number)
    line: dict[str, object] = {"status": status, **summary}
    line.update(totals)
    logger.info("request settled", extra=line)
    _log_undelivered(report)


def _log_undelivered(report: Report) -> None:
    logged = 0
    for result in report.results:
        if result.outcome == "delivered":
            continue
        if logged >= MAX_OUTCOME_LOG_LINES:
            break
        logged += 1
        logger.info(
            "event not delivered",
            extra={
                "messageId": result.message_id,
                "eventType": result.event_type,
                "outcome": result.outcome,
                "reason": result.reason,
            },
        )
