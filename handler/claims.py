"""The ordering gate of one delivery: what `handler.ordering` decides about a request's calls.

The request's changes are first decided among themselves (`ordering.resolve`: the newest of a
record's changes wins each slot), then claimed on a pool thread as soon as the calls are planned,
so the claim's round trip overlaps the calls that need none (the events list); the calls that do
wait for it and go out without the changes that must not be sent now. Once SMC has answered, the
claims of changes it did not take (refused, or failed and left to Segment's retry) are rolled
back — before the answer while the deadline allows, else in the background — and every lease is
released: only a change SMC took advances its record.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Executor, Future
from dataclasses import replace

from handler.batching import Chunk
from handler.deadline import Deadline
from handler.observability import count, in_thread_with_trace, logger
from handler.ordering import Claim, Lease, OrderingStore, Verdict, resolve
from handler.outcomes import Outcome, Report

STALE = "stale: a newer change was applied"
BUSY = "ordering_busy: another request is applying a change to the same state"
ORDERING_ERROR = "ordering_error: the ordering store refused the request"
BUSY_RETRY_AFTER_S = 5.0
MIN_UNDO_S = 0.1  # less time than this left: the undo is not waited for (see `_settle`)
# The calls wait this long at most for the claims (~10 ms when DynamoDB is well); a slower store
# is given up on, as when it fails: the changes it has not decided go out unordered, and most of
# the time is SMC's. The claim's own waits on other requests' leases end before this.
CLAIM_WAIT_S = 1.0
CLAIM_WAIT_SHARE = 0.4
# Outcomes of a sent row after which SMC holds its change: the claim stands. Any other (rejected,
# retried) is undone, as is a claim whose row was not sent.
_APPLIED: frozenset[Outcome] = frozenset({"delivered", "duplicate"})


class ClaimGate:
    """Claims the changes in `phases` at once (on `pool`); `admit` and `settle` use the verdicts."""

    def __init__(
        self, ordering: OrderingStore, phases: list[list[Chunk]], deadline: Deadline, pool: Executor
    ) -> None:
        self._ordering = ordering
        self._pool = pool
        self._deadline = deadline
        self._lease = Lease.for_seconds(deadline.remaining())
        wait_s = min(CLAIM_WAIT_S, CLAIM_WAIT_SHARE * deadline.remaining())
        self._wait_until = time.monotonic() + wait_s
        self._claims = [claim for phase in phases for chunk in phase for claim in chunk.claims or () if claim]
        self._claiming: Future[None] | None = None
        self._given_up = False
        if self._claims:
            resolve(self._claims)  # before any I/O: it holds even when the store fails
            claim = in_thread_with_trace(ordering.claim)
            wait_until_ms = int(time.time() * 1000 + wait_s * 1000)
            self._claiming = pool.submit(claim, self._claims, self._lease, wait_until_ms)

    @property
    def active(self) -> bool:
        """Whether any call of the delivery waits for claims."""
        return self._claiming is not None

    def admit(self, chunks: list[Chunk], report: Report) -> list[Chunk]:
        """Wait for the claims, settle the changes that must not be sent (stale: `duplicate`;
        held by another request or refused by the store: `retried`), and return the calls
        without them.

        When the store is too slow, the verdicts are taken as they stand: a change already seen
        held by another request is still retried; only the undecided ones go out unordered."""
        if self._claiming is not None:
            try:
                self._claiming.result(timeout=max(0.0, self._wait_until - time.monotonic()))
            except TimeoutError:
                self._given_up = True
        # One reading per change: the claim thread may still be deciding (store too slow).
        decisions = {id(claim): _decision(claim) for claim in self._claims}
        if self._given_up and any(verdict == "unordered" for verdict, _ in decisions.values()):
            count("OrderingStoreUnavailable")
            logger.warning("ordering store too slow; undecided changes applied unordered")
        admitted: list[Chunk] = []
        for chunk in chunks:
            whole: list[int] = []
            for row in range(chunk.rows):
                claim = chunk.claims[row] if chunk.claims is not None else None
                if claim is None:
                    whole.append(row)
                    continue
                verdict, slots = decisions[id(claim)]
                if verdict in ("claimed", "unordered"):
                    if len(slots) < len(claim.slots):
                        admitted.append(_narrowed(chunk, row, slots))
                    else:
                        whole.append(row)
                else:
                    _hold(report, chunk, row, verdict)
            if len(whole) == chunk.rows:
                admitted.append(chunk)
            elif whole:
                admitted.append(chunk.subset(whole))
        return admitted

    def settle(self, sent: list[tuple[Chunk, list[Outcome]]]) -> None:
        """Undo the claims of changes SMC did not take; release every other lease."""
        outcomes: dict[int, Outcome] = {}
        for chunk, results in sent:
            for claim, outcome in zip(chunk.claims or (), results, strict=False):
                if claim is not None:
                    outcomes[id(claim)] = outcome
        if self._given_up and self._claiming is not None:
            # The claims may still land: settle whatever they take once they do (a change taken
            # while its row was held back was never sent, so it is undone).
            self._claiming.add_done_callback(lambda _done: self._settle(outcomes, wait=False))
            return
        self._settle(outcomes, wait=True)

    def _settle(self, outcomes: dict[int, Outcome], *, wait: bool) -> None:
        undo: list[Claim] = []
        keep: list[Claim] = []
        for claim in self._claims:
            if claim.verdict == "claimed":
                (keep if outcomes.get(id(claim)) in _APPLIED else undo).append(claim)
        if not undo and not keep:
            return
        try:
            settling = self._pool.submit(in_thread_with_trace(self._ordering.settle), undo, keep, self._lease)
        except RuntimeError:  # the interpreter is exiting (the pool shut down): settle here instead
            self._ordering.settle(undo, keep, self._lease)
            return
        if not (wait and undo):
            return  # releases alone never need to be in place before the answer
        # An undo should be in place before the answer: once Segment has it, an older change of
        # the same state may come at once. The deadline still comes first; past it, the undo
        # finishes in the background (its lease keeps other requests off the record meanwhile).
        remaining = self._deadline.remaining()
        if remaining >= MIN_UNDO_S:
            with contextlib.suppress(TimeoutError):
                settling.result(timeout=remaining)
                return
        count("OrderingUndoDeferred", len(undo))


def _decision(claim: Claim) -> tuple[Verdict, list[str]]:
    """The verdict and the slots the change may send. `claimed` is complete before the verdict
    says so; an undecided change sends the slots the request's own newer changes left it."""
    verdict = claim.verdict
    if verdict == "claimed":
        return verdict, list(claim.claimed)
    if verdict == "unordered":
        return verdict, list(claim.own or claim.slots)
    return verdict, []


def _narrowed(chunk: Chunk, row: int, slots: list[str]) -> Chunk:
    """The row with only the columns it may set: newer values of the others stand (a profile's
    slots are its columns, after the key)."""
    claim = chunk.claims[row] if chunk.claims is not None else None
    keep_names = set(slots)
    target = chunk.target
    keep = [0] + [i for i, name in enumerate(target.fields) if i and name in keep_names]
    narrowed = replace(target, fields=tuple(target.fields[i] for i in keep))
    values = [chunk.values[row][i] for i in keep]
    return Chunk.of(narrowed, [values], [chunk.sources[row]], [claim])


def _hold(report: Report, chunk: Chunk, row: int, verdict: Verdict) -> None:
    """Settle a row that must not be sent now: stale for good, or retried later."""
    if verdict == "stale":
        outcome: Outcome = "duplicate"
        reason = STALE
    else:
        outcome, reason = "retried", ORDERING_ERROR if verdict == "error" else BUSY
        report.retry_after = max(report.retry_after or 0.0, BUSY_RETRY_AFTER_S)
    for index in chunk.sources[row]:
        report.settle(index, outcome, reason, part=chunk.target.part)
