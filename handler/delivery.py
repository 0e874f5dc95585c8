"""Sending a request's admitted events to SMC and settling each one's outcome."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

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


class Preparation:
    """`plan([map_event(e, settings) for e in events])` on a pool thread, started at once.

    The webhook starts it before the idempotency record is opened: the mapping then runs while
    the DynamoDB write waits on the network (its I/O releases the GIL). No SMC call starts before
    `result()`, which `deliver` calls only once the record is saved. `cancel()` (e.g. on a replay)
    stops the mapping at the next event, so a request that needs no delivery does not pay for it.
    """

    __slots__ = ("_cancelled", "_future")

    def __init__(self, events: list[SegmentEvent], settings: Settings) -> None:
        self._cancelled = False
        self._future: Future[list[list[Chunk]]] = _pool().submit(self._run, events, settings)

    def _run(self, events: list[SegmentEvent], settings: Settings) -> list[list[Chunk]]:
        operations = []
        for event in events:
            if self._cancelled:
                return []
            operations.append(map_event(event, settings))
        return plan(operations)

    def cancel(self) -> None:
        """Stop mapping (the result is then unusable); harmless once it has finished."""
        self._cancelled = True

    def result(self) -> list[list[Chunk]]:
        """The phases of calls; raises what mapping raised."""
        return self._future.result()


def deliver(
    events: list[SegmentEvent],
    report: Report,
    settings: Settings,
    client: SmcClient,
    deadline: Deadline,
    prepared: Preparation | None = None,
) -> None:
    """Map, group and send `events` (mapped already if `prepared`); settle every one in `report`."""
    if prepared is not None:
        phases = prepared.result()
    else:
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
