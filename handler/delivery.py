"""Sending a request's admitted events to SMC and settling each one's outcome.

Calls of a phase run with bounded parallelism, largest first. A call starts only while the
deadline leaves room for one SMC round trip; a call that cannot start is deferred (its events are
retried, and an earlier attempt's progress means Segment's retry sends only what is left). Rows
SMC's answer does not vouch for, next to rows it named as invalid, are sent once more on their
own inside the same request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from handler.batching import Chunk, plan
from handler.deadline import Deadline
from handler.errors import SmcDeferredError, SmcError, SmcTargetNotFoundError
from handler.events import SegmentEvent
from handler.mappers import map_event
from handler.observability import count, in_thread_with_trace, logger, tracer
from handler.ordering import Claim, Lease, OrderingStore
from handler.outcomes import Outcome, Report
from handler.progress import Progress
from handler.settings import Settings
from handler.smc.answers import RowVerdicts
from handler.smc.client import MIN_ATTEMPT_S, SmcClient

MAX_PARALLEL_CALLS = 8

Verdict = tuple[Outcome, str | None]


@dataclass(slots=True)
class ChunkOutcome:
    """What one call (and its one re-send) settled: a verdict per row of the chunk."""

    verdicts: list[Verdict]
    failure: SmcError | None = None  # the retryable failure behind the retried rows, if any


def _retried(chunk: Chunk, failure: SmcError) -> ChunkOutcome:
    return ChunkOutcome([("retried", f"{failure.reason}: {failure}")] * chunk.rows, failure)


def _send(client: SmcClient, chunk: Chunk, deadline: Deadline) -> RowVerdicts | SmcError:
    with tracer.provider.in_subsegment(f"## smc {chunk.target.action}") as subsegment:
        subsegment.put_annotation("rows", str(chunk.rows))
        try:
            return client.send_rows(chunk.target, chunk.body, chunk.rows, deadline)
        except SmcError as exc:
            subsegment.put_annotation("error", exc.reason)
            return exc


def _room_for_a_call(client: SmcClient, deadline: Deadline) -> bool:
    return deadline.remaining() >= max(MIN_ATTEMPT_S, client.typical_latency_s)


def _apply(verdicts: list[Verdict], rows: list[int], answer: RowVerdicts) -> list[int]:
    """Write `answer` (about `rows`, in order) into `verdicts`; return the rows still unconfirmed."""
    for position, reason in answer.rejected.items():
        verdicts[rows[position]] = ("rejected", reason)
    for position in answer.delivered():
        verdicts[rows[position]] = ("delivered", None)
    return [rows[position] for position in answer.unconfirmed]


def run_chunk(client: SmcClient, chunk: Chunk, deadline: Deadline) -> ChunkOutcome:
    """Send `chunk`; rows left unconfirmed next to rows SMC named go once more without the named ones."""
    if not _room_for_a_call(client, deadline):
        count("SmcCallsDeferred")
        return _retried(chunk, SmcDeferredError("not sent: Segment's deadline left no time for the call"))
    answer = _send(client, chunk, deadline)
    if isinstance(answer, SmcError):
        return _retried(chunk, answer)
    verdicts: list[Verdict] = [("retried", None)] * chunk.rows
    pending = _apply(verdicts, list(range(chunk.rows)), answer)
    failure = answer.failure
    if pending and answer.resend and _room_for_a_call(client, deadline):
        count("SmcRowsResent", len(pending))
        again = _send(client, chunk.subset(pending), deadline)
        if isinstance(again, SmcError):
            failure = again
        else:
            pending, failure = _apply(verdicts, pending, again), again.failure
    if pending:
        failure = failure or SmcDeferredError("not confirmed before Segment's deadline")
        for row in pending:
            verdicts[row] = ("retried", f"{failure.reason}: {failure}")
    return ChunkOutcome(verdicts, failure if pending else None)


def _settle(report: Report, chunk: Chunk, outcome: ChunkOutcome) -> None:
    failure = outcome.failure
    if failure is not None:
        if failure.status == 429:
            report.throttled = True
        if failure.retry_after is not None:
            report.retry_after = max(report.retry_after or 0.0, failure.retry_after)
        retried = sum(1 for verdict in outcome.verdicts if verdict[0] == "retried")
        logger.warning(
            "SMC call failed",
            extra={
                "target": chunk.target.describe(),
                "rows": chunk.rows,
                "retried": retried,
                "reason": f"{failure.reason}: {failure}",
                **({"missing": failure.missing} if isinstance(failure, SmcTargetNotFoundError) else {}),
            },
        )
    for (outcome_name, reason), sources in zip(outcome.verdicts, chunk.sources, strict=True):
        for index in sources:
            report.settle(index, outcome_name, reason)


def _run_phase(client: SmcClient, phase: list[Chunk], deadline: Deadline) -> list[ChunkOutcome]:
    """Every call of a phase, at most MAX_PARALLEL_CALLS at a time, the largest first."""
    if len(phase) == 1:
        return [run_chunk(client, phase[0], deadline)]
    order = sorted(range(len(phase)), key=lambda i: len(phase[i].body), reverse=True)
    results: list[ChunkOutcome | None] = [None] * len(phase)
    queue: Iterator[int] = iter(order)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                position = next(queue, None)
            if position is None:
                return
            results[position] = run_chunk(client, phase[position], deadline)

    traced = in_thread_with_trace(worker)
    futures = [_pool().submit(traced) for _ in range(min(MAX_PARALLEL_CALLS, len(phase)))]
    for future in futures:
        future.result()
    return [result for result in results if result is not None]


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


def _claimed(
    ordering: OrderingStore, lease: Lease, phases: list[list[Chunk]], report: Report
) -> list[list[Chunk]]:
    """Claim every change that overwrites state (handler.ordering) and drop from the calls those
    that must not be sent now: stale ones (`duplicate`) and ones another request is applying."""
    claims = [claim for phase in phases for chunk in phase for claim in chunk.claims or () if claim]
    if not claims:
        return phases
    ordering.claim(claims, lease)
    kept_phases: list[list[Chunk]] = []
    for phase in phases:
        kept_chunks: list[Chunk] = []
        for chunk in phase:
            rows = list(range(chunk.rows))
            if chunk.claims is not None:
                rows = [row for row in rows if _may_send(report, chunk, row)]
            if len(rows) == chunk.rows:
                kept_chunks.append(chunk)
            elif rows:
                kept_chunks.append(chunk.subset(rows))
        if kept_chunks:
            kept_phases.append(kept_chunks)
    return kept_phases


def _may_send(report: Report, chunk: Chunk, row: int) -> bool:
    claim = chunk.claims[row] if chunk.claims is not None else None
    if claim is None or claim.verdict in ("claimed", "unordered"):
        return True
    if claim.verdict == "stale":
        settled: Verdict = ("duplicate", "stale: a newer change was applied")
    else:
        settled = ("retried", "ordering_busy: another request is applying a change to the same state")
        report.retry_after = max(report.retry_after or 0.0, 5.0)
    for index in chunk.sources[row]:
        report.settle(index, *settled)
    return False


def _not_taken(sent: list[tuple[Chunk, ChunkOutcome]]) -> list[Claim]:
    """The claimed changes SMC did not take: their claims must not stand."""
    return [
        claim
        for chunk, outcome in sent
        if chunk.claims is not None
        for claim, (name, _reason) in zip(chunk.claims, outcome.verdicts, strict=True)
        if claim is not None and claim.verdict == "claimed" and name != "delivered"
    ]


def deliver(
    events: list[SegmentEvent],
    report: Report,
    settings: Settings,
    client: SmcClient,
    deadline: Deadline,
    prepared: Preparation | None = None,
    earlier: Progress | None = None,
    ordering: OrderingStore | None = None,
) -> None:
    """Map, group and send `events` (mapped already if `prepared`); settle every one in `report`.

    `earlier`: what a previous attempt of the same request settled for good; those events are
    reported as then and not sent again. `ordering`: where changes to overwritten state are
    claimed first, so that none older than one applied reaches SMC (None: no ordering).
    """
    if earlier:
        events = earlier.settle_known(events, report)
        prepared = None  # mapped for every event; the rest is mapped again below
    if prepared is not None:
        phases = prepared.result()
    else:
        phases = plan([map_event(event, settings) for event in events])
    lease = Lease.for_seconds(deadline.remaining())
    if ordering is not None:
        phases = _claimed(ordering, lease, phases, report)
    sent: list[tuple[Chunk, ChunkOutcome]] = []
    for phase in phases:
        for chunk, outcome in zip(phase, _run_phase(client, phase, deadline), strict=True):
            _settle(report, chunk, outcome)
            sent.append((chunk, outcome))
    if ordering is not None:
        undo = _not_taken(sent)
        if undo:
            ordering.undo(undo, lease)


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for parallel SMC calls, kept for the life of the process (a warm Lambda reuses them)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL_CALLS, thread_name_prefix="smc-call")
    return _executor
