"""Sending a request's admitted events to SMC and settling each one's outcome.

Calls of a phase run with bounded parallelism, largest first. A call starts only while the
deadline leaves room for one SMC round trip; a call that cannot start is deferred (its events are
retried, and an earlier attempt's progress means Segment's retry sends only what is left). Rows
SMC's answer does not vouch for, next to rows it named as invalid, are sent once more on their
own inside the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue

from handler import profile_columns
from handler.batching import Chunk, plan
from handler.brake import Brake
from handler.claims import ClaimGate
from handler.deadline import Deadline
from handler.errors import SmcDeferredError, SmcError, SmcRetryableError, SmcTargetNotFoundError
from handler.events import SegmentEvent
from handler.mappers import map_event
from handler.mappers.profile import PART as PROFILE_PART
from handler.observability import count, in_thread_with_trace, logger, tracer
from handler.operations import Operation
from handler.outcomes import Outcome, Report
from handler.progress import Progress
from handler.settings import Settings
from handler.smc.answers import RowVerdicts
from handler.smc.client import MIN_ATTEMPT_S, SmcClient
from handler.stores import Stores
from handler.transactional import send_all

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


def run_chunk(
    client: SmcClient, chunk: Chunk, deadline: Deadline, brake: Brake | None = None
) -> ChunkOutcome:
    """Send `chunk`; rows left unconfirmed next to rows SMC named go once more without the named ones."""
    held = brake.held() if brake is not None else None
    if held is not None:
        count("SmcCallsHeld")
        return _retried(chunk, held)
    if not _room_for_a_call(client, deadline):
        count("SmcCallsDeferred")
        return _retried(chunk, SmcDeferredError("not sent: Segment's deadline left no time for the call"))
    answer = _send(client, chunk, deadline)
    if isinstance(answer, SmcError):
        if brake is not None:
            brake.engage(answer)
        return _retried(chunk, answer)
    verdicts: list[Verdict] = [("retried", None)] * chunk.rows
    pending = _apply(verdicts, list(range(chunk.rows)), answer)
    failure = answer.failure
    held = brake.held() if brake is not None else None
    if pending and answer.resend and held is None and _room_for_a_call(client, deadline):
        count("SmcRowsResent", len(pending))
        again = _send(client, chunk.subset(pending), deadline)
        if isinstance(again, SmcError):
            if brake is not None:
                brake.engage(again)
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
        report.note_failure(failure)
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
    part = chunk.target.part
    for (outcome_name, reason), sources in zip(outcome.verdicts, chunk.sources, strict=True):
        for index in sources:
            report.settle(index, outcome_name, reason, part=part)


def _run_phase(
    client: SmcClient,
    phase: list[Chunk],
    deadline: Deadline,
    report: Report,
    gate: ClaimGate | None,
    brake: Brake | None = None,
) -> list[tuple[Chunk, ChunkOutcome]]:
    """Every call of a phase, at most MAX_PARALLEL_CALLS at a time, the largest first; calls whose
    changes are being claimed (`gate`) join once the claim is done, without what it held back."""
    gated = [chunk for chunk in phase if gate is not None and gate.active and chunk.claims is not None]
    ready = [chunk for chunk in phase if not gated or chunk.claims is None]
    if len(ready) == 1 and not gated:
        return [(ready[0], run_chunk(client, ready[0], deadline, brake))]
    ordered = sorted(ready, key=lambda chunk: len(chunk.body), reverse=True)
    results: list[tuple[Chunk, ChunkOutcome]] = []  # list.append is atomic: workers share it
    if brake is not None and ordered and (len(ordered) > 1 or gated):
        # Queued mode: the largest call goes first, alone, so a throttling SMC gets one call
        # from the batch, not one per target in flight before its 429 is seen.
        first = ordered.pop(0)
        results.append((first, run_chunk(client, first, deadline, brake)))
    calls: SimpleQueue[Chunk | None] = SimpleQueue()
    for chunk in ordered:
        calls.put(chunk)

    def worker() -> None:
        while (chunk := calls.get()) is not None:
            results.append((chunk, run_chunk(client, chunk, deadline, brake)))

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


@dataclass(slots=True)
class Planned:
    """A request's work: calls in two phases (loads and segment changes, then deletions), the
    transactional messages sent between them, the parts refused outright, and how many parts
    each event of several has (event index → count; 0: nothing to do)."""

    phases: list[list[Chunk]]
    sends: list[Operation] = field(default_factory=list)
    refused: list[Operation] = field(default_factory=list)
    parts: dict[int, int] = field(default_factory=dict)


def plan_events(
    events: list[SegmentEvent],
    settings: Settings,
    client: SmcClient | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Planned:
    """Map every event and group the rows into calls (`client`: to read the profile list's
    column lengths first, when there is one)."""
    if settings.profiles is not None and client is not None:
        profile_columns.ensure(client, settings.profiles.list_name)
    rows: list[Operation] = []
    planned = Planned([])
    for event in events:
        if cancelled():
            return planned
        operations = map_event(event, settings)
        if len(operations) != 1:
            planned.parts[event.index] = len(operations)
        for op in operations:
            if op.refused is not None:
                planned.refused.append(op)
            elif op.target.action == "send":
                planned.sends.append(op)
            else:
                rows.append(op)
    planned.phases = plan(rows)
    return planned


class Preparation:
    """`plan_events(events, settings, client)` on a pool thread, started at once.

    The webhook starts it before the idempotency record is opened: the mapping then runs while
    the DynamoDB write waits on the network (its I/O releases the GIL). No SMC call starts before
    `result()`, which `deliver` calls only once the record is saved. `cancel()` (e.g. on a replay)
    stops the mapping at the next event, so a request that needs no delivery does not pay for it.
    """

    __slots__ = ("_cancelled", "_future")

    def __init__(self, events: list[SegmentEvent], settings: Settings, client: SmcClient) -> None:
        self._cancelled = False
        self._future: Future[Planned] = _pool().submit(plan_events, events, settings, client, self._stopped)

    def _stopped(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop mapping (the result is then unusable); harmless once it has finished."""
        self._cancelled = True

    def result(self) -> Planned:
        """The planned work; raises what mapping raised."""
        return self._future.result()


def deliver(
    events: list[SegmentEvent],
    report: Report,
    settings: Settings,
    client: SmcClient,
    deadline: Deadline,
    prepared: Preparation | None = None,
    earlier: Progress | None = None,
    stores: Stores | None = None,
    brake: Brake | None = None,
) -> None:
    """Map, group and send `events` (mapped already if `prepared`); settle every one in `report`.

    `earlier`: what a previous attempt of the same request settled for good; those events are
    reported as then and not sent again. `stores`: where changes to overwritten state are
    claimed first (none older than one applied reaches SMC) and transactional messages recorded
    (sent at most once); without them, neither. `brake`: stop calling SMC once it throttles.
    """
    stores = stores or Stores()
    if earlier:
        events = earlier.settle_known(events, report)
        prepared = None  # mapped for every event; the rest is mapped again below
    work = prepared.result() if prepared is not None else plan_events(events, settings, client)
    report.expect_parts(work.parts)
    for index in (index for index, parts in work.parts.items() if parts == 0):
        report.results[index].parts = 1
        report.settle(index, "filtered", "nothing to send")
    for op in work.refused:
        for index in op.sources:
            report.settle(index, "rejected", op.refused, part=op.target.part)
    gate = ClaimGate(stores.ordering, work.phases, deadline, _pool()) if stores.ordering is not None else None
    sent: list[tuple[Chunk, list[Outcome]]] = []
    failures: list[SmcError] = []
    loads, deletions = work.phases
    for phase in (loads, None, deletions):
        if phase is None:  # after the profiles they may need, before any profile is deleted
            held = _outage(failures)
            waiting = _profiles_pending(sent, events)
            send_all(
                work.sends,
                report,
                client,
                stores.sends,
                settings.organization,
                deadline,
                brake,
                held,
                waiting,
            )
            continue
        for chunk, outcome in _run_phase(client, phase, deadline, report, gate, brake):
            _settle(report, chunk, outcome)
            sent.append((chunk, [verdict[0] for verdict in outcome.verdicts]))
            if outcome.failure is not None:
                failures.append(outcome.failure)
    if gate is not None and gate.active:
        gate.settle(sent)


def _outage(failures: list[SmcError]) -> SmcError | None:
    """Why no transactional message should be risked now: SMC was unavailable to a load of this
    request. A send answered 500, 502 or 504 cannot be repeated (it may have gone out), so during
    an outage it is not attempted at all; its event is retried instead of reported unconfirmed."""
    for failure in failures:
        if isinstance(failure, SmcRetryableError) and not isinstance(failure, SmcDeferredError):
            return SmcRetryableError(
                f"not sent: SMC was unavailable to another call of this batch ({failure})",
                status=failure.status,
                retry_after=failure.retry_after,
            )
    return None


def _profiles_pending(sent: list[tuple[Chunk, list[Outcome]]], events: list[SegmentEvent]) -> frozenset[str]:
    """The userIds whose profile load in this request is still to be done (retried): a message to
    them waits for it. A profile row SMC refused for good does not hold the message back (waiting
    would not change it; SMC's lookup settles the message)."""
    user_ids = {event.index: event.user_id for event in events}
    pending: set[str] = set()
    for chunk, outcomes in sent:
        if chunk.target.part != PROFILE_PART or chunk.target.action != "load":
            continue
        for outcome, sources in zip(outcomes, chunk.sources, strict=True):
            if outcome == "retried":
                pending.update(str(user_ids[i]) for i in sources if user_ids.get(i))
    return frozenset(pending)


_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for parallel SMC calls, kept for the life of the process (a warm Lambda reuses them)."""
    global _executor
    if _executor is None:
        # The calls, plus the mapping (`Preparation`), a claim and a background release.
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL_CALLS + 3, thread_name_prefix="smc-call")
    return _executor
