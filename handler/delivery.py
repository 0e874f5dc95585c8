"""Sending a request's admitted events to SMC and settling each one's outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from handler.batching import Chunk, plan
from handler.deadline import Deadline
from handler.errors import SmcError
from handler.events import SegmentEvent
from handler.mappers import map_event
from handler.observability import in_thread_with_trace, logger, tracer
from handler.outcomes import Outcome, Report
from handler.settings import Settings
from handler.smc.client import SmcClient, SmcResult

MAX_PARALLEL_CALLS = 8


def _send(client: SmcClient, chunk: Chunk, deadline: Deadline) -> SmcResult | SmcError:
    with tracer.provider.in_subsegment(f"## smc {chunk.target.action}") as subsegment:
        subsegment.put_annotation("rows", str(chunk.rows))
        try:
            return client.send_rows(chunk.target, chunk.body, chunk.rows, deadline)
        except SmcError as exc:
            subsegment.put_annotation("error", exc.reason)
            return exc


def _settle(report: Report, chunk: Chunk, outcome: SmcResult | SmcError) -> None:
    if isinstance(outcome, SmcError):
        kind: Outcome = "retried" if outcome.retryable else "rejected"
        if outcome.retryable and outcome.status == 429:
            report.throttled = True
        if outcome.retry_after is not None:
            report.retry_after = max(report.retry_after or 0.0, outcome.retry_after)
        logger.warning(
            "SMC call failed",
            extra={
                "target": chunk.target.describe(),
                "rows": chunk.rows,
                "outcome": kind,
                "reason": str(outcome),
            },
        )
        for sources in chunk.sources:
            for index in sources:
                report.settle(index, kind, f"{outcome.reason}: {outcome}")
        return
    for row, sources in enumerate(chunk.sources):
        reason = outcome.row_errors.get(row)
        for index in sources:
            if reason is None:
                report.settle(index, "delivered")
            else:
                report.settle(index, "rejected", reason)


def deliver(
    events: list[SegmentEvent], report: Report, settings: Settings, client: SmcClient, deadline: Deadline
) -> None:
    """Map, group and send `events`; settle every one of them in `report`."""
    phases = plan([map_event(event, settings) for event in events])
    for phase in phases:
        if len(phase) == 1:
            _settle(report, phase[0], _send(client, phase[0], deadline))
            continue
        # Largest first: the call SMC takes longest over starts before the others.
        send = in_thread_with_trace(_send)
        pool = _pool()
        futures = {
            id(chunk): pool.submit(send, client, chunk, deadline)
            for chunk in sorted(phase, key=lambda chunk: len(chunk.body), reverse=True)
        }
        for chunk in phase:
            _settle(report, chunk, futures[id(chunk)].result())


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for parallel SMC calls, kept for the life of the process (a warm Lambda reuses them)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL_CALLS, thread_name_prefix="smc-call")
    return _executor
