"""Sending a request's admitted events to SMC and settling each one's outcome.

Calls of a phase run with bounded parallelism, largest first. A call starts only while the
deadline leaves room for one SMC round trip; a call that cannot start is deferred (its events are
retried, and an earlier attempt's progress means Segment's retry sends only what is left). Rows
SMC's answer does not vouch for, next to rows it named as invalid, are sent once more on their
own inside the same request.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue

from handler.batching import Chunk, plan
from handler.claims import ClaimGate
from handler.deadline import Deadline
from handler.errors import SmcDeferredError, SmcError, SmcTargetNotFoundError
from handler.events import SegmentEvent
from handler.mappers import map_event
from handler.observability import count, in_thread_with_trace, logger, tracer
from handler.ordering import OrderingStore
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


def _run_phase(
    client: SmcClient, phase: list[Chunk], deadline: Deadline, report: Report, gate: ClaimGate | None
) -> list[tuple[Chunk, ChunkOutcome]]:
    """Every call of a phase, at most MAX_PARALLEL_CALLS at a time, the largest first; calls whose
    changes are being claimed (`gate`) join once the claim is done, without what it held back."""
    gated = [chunk for chunk in phase if gate is not None and gate.active and chunk.claims is not None]
    ready = [chunk for chunk in phase if not gated or chunk.claims is None]
    if len(ready) == 1 and not gated:
        return [(ready[0], run_chunk(client, ready[0], deadline))]
    calls: SimpleQueue[Chunk | None] = SimpleQueue()
    for chunk in sorted(ready, key=lambda chunk: len(chunk.body), reverse=True):
        calls.put(chunk)
    results: list[tuple[Chunk, ChunkOutcome]] = []  # list.append is atomic: workers share it

    def worker() -> None:
        while (chunk := calls.get()) is not None:
            results.append((chunk, run_chunk(client, chunk, deadline)))

    traced = in_thread_with_trace(worker)
    workers = [_pool().submit(traced) for _ in range(min(MAX_PARALLEL_CALLS, len(phase)))]
    if gate is not None and gated:
        for chunk in sorted(gate.admit(gated, report), key=lambda chunk: len(chunk.body), reverse=True):
            calls.put(chunk)
    for _ in workers:
        calls.put(None)
    for future in workers:
        future.result()
    return results


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
    gate = ClaimGate(ordering, phases, deadline, _pool()) if ordering is not None else None
    sent: list[tuple[Chunk, list[Outcome]]] = []
    for phase in phases:
        for chunk, outcome in _run_phase(client, phase, deadline, report, gate):
            _settle(report, chunk, outcome)
            sent.append((chunk, [verdict[0] for verdict in outcome.verdicts]))
    if gate is not None and gate.active:
        gate.settle(sent)


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for parallel SMC calls, kept for the life of the process (a warm Lambda reuses them)."""
    global _executor
    if _executor is None:
        # The calls, plus the mapping (`Preparation`), a claim and a background release.
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL_CALLS + 3, thread_name_prefix="smc-call")
    return _executor
