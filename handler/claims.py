"""The ordering gate of one delivery: what `handler.ordering` decides about a request's calls.

The changes that overwrite state are claimed on a pool thread as soon as the calls are planned, so
the claim's round trip overlaps the calls that need none (the events list); the calls that do wait
for it and go out without the changes that must not be sent now. Once SMC has answered, what it
refused for good is rolled back (while the deadline allows), and every other lease is released
in the background: a change SMC took stands, and a change it could not take now stands for its
redelivery, which carries the same stamp.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import replace

from handler.batching import Chunk
from handler.deadline import Deadline
from handler.observability import count, in_thread_with_trace, logger
from handler.ordering import Claim, Lease, OrderingStore
from handler.outcomes import Outcome, Report

STALE = "stale: a newer change was applied"
BUSY = "ordering_busy: another request is applying a change to the same state"
BUSY_RETRY_AFTER_S = 5.0
MIN_UNDO_S = 0.1  # an undo that cannot finish before the deadline is left undone (see `settle`)
# The calls wait this long at most for the claims (~10 ms when DynamoDB is well); a slower store
# is given up on, as when it fails: the changes go out unordered, and most of the time is SMC's.
CLAIM_WAIT_S = 1.0
CLAIM_WAIT_SHARE = 0.4


class ClaimGate:
    """Claims the changes in `phases` at once (on `pool`); `admit` and `settle` use the verdicts."""

    def __init__(
        self, ordering: OrderingStore, phases: list[list[Chunk]], deadline: Deadline, pool: Executor
    ) -> None:
        self._ordering = ordering
        self._pool = pool
        self._deadline = deadline
        self._lease = Lease.for_seconds(deadline.remaining())
        self._claims = [claim for phase in phases for chunk in phase for claim in chunk.claims or () if claim]
        self._claiming: Future[None] | None = None
        self._given_up = False
        if self._claims:
            claim = in_thread_with_trace(ordering.claim)
            self._claiming = pool.submit(claim, self._claims, self._lease)

    @property
    def active(self) -> bool:
        """Whether any call of the delivery waits for claims."""
        return self._claiming is not None

    def admit(self, chunks: list[Chunk], report: Report) -> list[Chunk]:
        """Wait for the claims, settle the changes that must not be sent (stale: `duplicate`;
        held by another request: `retried`), and return the calls without them."""
        if self._claiming is not None:
            try:
                self._claiming.result(
                    timeout=min(CLAIM_WAIT_S, CLAIM_WAIT_SHARE * self._deadline.remaining())
                )
            except TimeoutError:
                count("OrderingStoreUnavailable")
                logger.warning("ordering store too slow; applied unordered")
                self._given_up = True
                return chunks
        admitted: list[Chunk] = []
        for chunk in chunks:
            whole: list[int] = []
            for row in range(chunk.rows):
                if not _may_send(report, chunk, row):
                    continue
                if _partly_stale(chunk, row):
                    admitted.append(_narrowed(chunk, row))
                else:
                    whole.append(row)
            if len(whole) == chunk.rows:
                admitted.append(chunk)
            elif whole:
                admitted.append(chunk.subset(whole))
        return admitted

    def settle(self, sent: list[tuple[Chunk, list[Outcome]]]) -> None:
        """Roll back the claims of changes SMC refused for good; release every other lease."""
        if self._given_up and self._claiming is not None:
            # The claims may still land: release whatever they take once they do.
            claims, lease = self._claims, self._lease
            self._claiming.add_done_callback(lambda _done: self._ordering.release(claims, lease))
            return
        undo: list[Claim] = []
        release: list[Claim] = []
        for chunk, outcomes in sent:
            for claim, outcome in zip(chunk.claims or (), outcomes, strict=False):
                if claim is not None and claim.verdict == "claimed":
                    (undo if outcome == "rejected" else release).append(claim)
        if undo and self._deadline.remaining() >= MIN_UNDO_S:
            self._ordering.undo(undo, self._lease)
        elif undo:
            # The claim stands for a change that was never applied: an older change of the same
            # state is then taken for stale until a newer one comes. Rare (a refused row after
            # the deadline), and counted.
            count("OrderingUndoSkipped", len(undo))
            release.extend(undo)
        if release:
            self._pool.submit(in_thread_with_trace(self._ordering.release), release, self._lease)


def _partly_stale(chunk: Chunk, row: int) -> bool:
    claim = chunk.claims[row] if chunk.claims is not None else None
    return claim is not None and claim.verdict == "claimed" and len(claim.claimed) < len(claim.slots)


def _narrowed(chunk: Chunk, row: int) -> Chunk:
    """The row with only the columns its claim took: newer values of the others stand (a
    profile's slots are its columns, after the key)."""
    claim = chunk.claims[row] if chunk.claims is not None else None
    claimed = set(claim.claimed if claim is not None else ())
    target = chunk.target
    keep = [0] + [i for i, name in enumerate(target.fields) if i and name in claimed]
    narrowed = replace(target, fields=tuple(target.fields[i] for i in keep))
    values = [chunk.values[row][i] for i in keep]
    return Chunk.of(narrowed, [values], [chunk.sources[row]], [claim])


def _may_send(report: Report, chunk: Chunk, row: int) -> bool:
    claim = chunk.claims[row] if chunk.claims is not None else None
    if claim is None or claim.verdict in ("claimed", "unordered"):
        return True
    outcome: Outcome = "duplicate" if claim.verdict == "stale" else "retried"
    if outcome == "retried":
        report.retry_after = max(report.retry_after or 0.0, BUSY_RETRY_AFTER_S)
    for index in chunk.sources[row]:
        report.settle(index, outcome, STALE if outcome == "duplicate" else BUSY, part=chunk.target.part)
    return False
