"""The Segment side of the fault suite: a realistic mixed workload, Segment's retry rules, and the
accounting that proves no event was lost or written twice.

- `mixed_workload` builds the requests Segment sends: every call type, signed single events and
  bearer-authenticated arrays and `{"batch": [...]}` wrappers, events SMC refuses, events the
  handler refuses, a duplicate inside a batch, a redelivered request, and membership changes
  whose final state depends on order.
- `SegmentSim` sends them through the real `lambda_handler` and retries exactly as Segment
  does: the whole request again on 5xx, 429 or a time-out (including a handler that dies),
  never on another 4xx; a bounded number of attempts. A hook before every attempt lets a fault
  case break and heal the world.
- `SmcTap` watches the sandbox apply each load/delete, per key (MESSAGE_ID, match key, USER_ID),
  with the time the request arrived and the status the handler got back.
- `verify` asserts: every event is in SMC exactly once or was answered with a permanent
  outcome whose body names it; no MESSAGE_ID twice; membership is what the last change intended;
  deleted users are gone; and no event was sent to SMC again after Segment had its 200 (unless
  the case runs without the idempotency store). It returns the case's tallies.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests import support

Shape = Literal["single", "array", "batch"]
RELIABILITY_FILE = Path(__file__).with_name(".reliability.json")


# -- the workload ----------------------------------------------------------------------------------
@dataclass
class Delivery:
    """One HTTP request Segment sends (and resends, whole, on a retryable answer)."""

    events: list[dict[str, Any]]
    shape: Shape

    def api_event(self) -> dict[str, Any]:
        if self.shape == "single":
            return support.api_event(self.events[0])
        payload: Any = self.events if self.shape == "array" else {"batch": self.events, "context": {}}
        return support.api_event(payload, signature=False, bearer=support.BEARER_TOKEN)

    def split(self) -> list[Delivery]:
        """Segment's stream batching re-forms a retried batch: here, two halves in the other shape."""
        half = len(self.events) // 2
        shape: Shape = "batch" if self.shape == "array" else "array"
        return [Delivery(self.events[:half], shape), Delivery(self.events[half:], shape)]


@dataclass
class Workload:
    deliveries: list[Delivery]
    row_events: set[str]  # messageIds that should end as one row in the events list
    rejected: set[str]  # messageIds the handler or SMC must refuse, naming them
    membership: dict[str, bool]  # CUSTOMER_ID -> member of the segment at the end
    deleted_users: set[str]  # USER_IDs whose (pre-seeded) rows must be gone
    seed: list[dict[str, Any]]  # events delivered before the fault: rows the deletions remove
    segment: str = "vip"
    events_list: str = support.EVENTS_LIST

    @property
    def events(self) -> int:
        ids = {e["messageId"] for d in self.deliveries for e in d.events}
        return len(ids)


def _at(second: int) -> str:
    return f"2026-11-27T10:20:{second:02d}.000Z"


def mixed_workload(*, segment: str = "vip", seed_deletions: bool = True, conflicts: bool = True) -> Workload:
    """Ten requests, ~40 events, every call type; see the module docstring.

    `conflicts=False` leaves out membership changes of one person split across requests (the
    only part whose end state depends on the order in which requests reach SMC).
    """
    tag = uuid.uuid4().hex[:6]

    def grp(method: str, customer: str, second: int) -> dict[str, Any]:
        return support.group(method, segment=segment, userId=customer, timestamp=_at(second))

    invalid = {"type": "track", "userId": "u-invalid", "messageId": f"bad-{tag}"}  # no event name
    # SMC refuses these rows: the fault suite's events list has a narrow EVENT_NAME
    # (support.narrow_event_name); the destination only truncates to its own schema's 255.
    too_long_track = support.track("x" * support.TOO_LONG_FOR_NARROW)
    too_long_page = support.page(name="p" * support.TOO_LONG_FOR_NARROW)
    twin = support.track("Twin Sent")
    gone = [f"gone-{tag}-1", f"gone-{tag}-2"]
    seed = [support.track(userId=gone[0]), support.identify(userId=gone[0]), support.track(userId=gone[1])]
    single = [support.identify(), support.track(), support.page(), support.screen(), support.alias()]
    array = [support.track() for _ in range(6)] + [support.identify(), support.identify()]
    array += [support.page(), support.screen(), invalid, too_long_track]
    array += [grp("ADD", "cust-B", 2), grp("ADD", "cust-C", 3), grp("REMOVE", "cust-C", 4)]
    batch = [support.track() for _ in range(4)] + [support.identify(), support.alias(), twin, dict(twin)]
    batch += [grp("REMOVE", "cust-E", 5), grp("ADD", "cust-E", 6), too_long_page]
    membership = {"cust-B": True, "cust-C": False, "cust-E": True}
    if conflicts:
        single.append(grp("ADD", "cust-A", 1))
        array.append(grp("REMOVE", "cust-A", 7))
        membership["cust-A"] = False
    else:
        single.append(grp("ADD", "cust-A", 1))
        membership["cust-A"] = True
    deliveries = [Delivery([e], "single") for e in single]
    deliveries += [Delivery(array, "array"), Delivery(batch, "batch")]
    if seed_deletions:
        batch.append(support.delete(userId=gone[0]))
        deliveries.append(Delivery([support.delete(userId=gone[1])], "single"))
    deliveries.append(Delivery([single[1]], "single"))  # Segment delivers the same request again
    all_events = [e for d in deliveries for e in d.events]
    rejected = {invalid["messageId"], too_long_track["messageId"], too_long_page["messageId"]}
    row_types = {"identify", "track", "page", "screen", "alias"}
    rows = {e["messageId"] for e in all_events if e["type"] in row_types} - rejected
    return Workload(
        deliveries=deliveries,
        row_events=rows,
        rejected=rejected,
        membership=membership,
        deleted_users=set(gone) if seed_deletions else set(),
        seed=seed if seed_deletions else [],
        segment=segment,
    )


def seed_rows(workload: Workload) -> None:
    """Deliver the rows the workload's deletions remove (on a healthy stack, before any fault)."""
    if not workload.seed:
        return
    for _ in range(3):  # a cold start on a busy machine can miss the short test deadline: retry
        status, body, _ = support.invoke(
            support.api_event(workload.seed, signature=False, bearer=support.BEARER_TOKEN)
        )
        if status != 503:
            break
    assert status == 200 and body["delivered"] == len(workload.seed), body


# -- Segment's retry behaviour --------------------------------------------------------------------
@dataclass
class Attempt:
    delivery: int
    number: int
    kind: str  # "answered", "timeout" (Segment gave up waiting), "crashed" (the Lambda died), "lost"
    status: int | None
    seconds: float
    retry_after: str | None = None


@dataclass
class SimRun:
    attempts: list[Attempt] = field(default_factory=list)
    final: dict[str, str] = field(default_factory=dict)  # messageId -> acked | rejected | dropped | gave_up
    acked_at: dict[str, float] = field(default_factory=dict)  # messageId -> first 200 Segment received
    reasons: dict[str, str] = field(default_factory=dict)

    def statuses(self) -> collections.Counter[str]:
        return collections.Counter(str(a.status) if a.kind == "answered" else a.kind for a in self.attempts)


Hook = Callable[[int, int], None]


class SegmentSim:
    """Delivers requests one after another (each to its final answer), retrying like Segment."""

    def __init__(
        self,
        *,
        max_attempts: int = 6,
        timeout_s: float = 5.0,
        retry_delay_s: float = 0.0,
        before_attempt: Hook | None = None,
        lose_answer: Callable[[int, int], bool] | None = None,
        reform_on_retry: bool = False,
        context: Callable[[], support.FakeContext] = support.FakeContext,
    ) -> None:
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.retry_delay_s = retry_delay_s
        self.before_attempt = before_attempt
        self.lose_answer = lose_answer
        self.reform_on_retry = reform_on_retry
        self.context = context
        self.run_state = SimRun()

    def run(self, deliveries: list[Delivery]) -> SimRun:
        for index, delivery in enumerate(deliveries):
            self._deliver(index, delivery, 1)
        return self.run_state

    def _deliver(self, index: int, delivery: Delivery, first_attempt: int) -> None:
        run = self.run_state
        for number in range(first_attempt, self.max_attempts + 1):
            if self.before_attempt is not None:
                self.before_attempt(index, number)
            event = delivery.api_event()
            started = time.monotonic()
            try:
                status, body, headers = support.invoke(event, self.context())
            except BaseException as exc:  # the Lambda died: API Gateway answers 5xx, Segment retries
                if isinstance(exc, KeyboardInterrupt):
                    raise
                run.attempts.append(Attempt(index, number, "crashed", None, time.monotonic() - started))
            else:
                seconds = time.monotonic() - started
                if seconds > self.timeout_s:
                    run.attempts.append(Attempt(index, number, "timeout", status, seconds))
                elif self.lose_answer is not None and self.lose_answer(index, number):
                    run.attempts.append(Attempt(index, number, "lost", status, seconds))
                else:
                    run.attempts.append(
                        Attempt(index, number, "answered", status, seconds, headers.get("Retry-After"))
                    )
                    if status != 429 and status < 500:
                        self._settle(delivery, status, body)
                        return
            if self.retry_delay_s:
                time.sleep(self.retry_delay_s)
            if self.reform_on_retry and delivery.shape != "single" and len(delivery.events) > 1:
                for part in delivery.split():
                    self._deliver(index, part, number + 1)
                return
        for raw in delivery.events:
            run.final.setdefault(raw["messageId"], "gave_up")

    def _settle(self, delivery: Delivery, status: int, body: dict[str, Any]) -> None:
        run = self.run_state
        named = {f["index"]: f for f in body.get("failures", []) if f.get("outcome") == "rejected"}
        now = time.monotonic()
        for position, raw in enumerate(delivery.events):
            mid = raw["messageId"]
            failure = named.get(position)
            if failure is not None:
                assert failure["messageId"] == mid, (failure, mid)
                run.final[mid] = "rejected"
                run.reasons[mid] = failure["reason"]
            elif status == 200:
                if run.final.get(mid) != "rejected":
                    run.final[mid] = "acked"
                    run.acked_at.setdefault(mid, now)
            else:  # a request-level 4xx: Segment drops the request, no event is named
                run.final.setdefault(mid, "dropped")


# -- what SMC applied ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Application:
    list_name: str
    segment: str | None
    action: str
    keys: tuple[str, ...]  # key values of the rows SMC applied (invalid rows left out)
    arrived: float
    status: int | None  # what the handler got back; None: the answer never reached it


class SmcTap:
    """Wraps the sandbox state (instance attributes, undone by `close`) to log what was applied."""

    def __init__(self, sandbox: Any) -> None:
        self.state = sandbox.state
        self.faults = sandbox.faults
        self.applications: list[Application] = []
        self._local = threading.local()
        self._originals = {
            "load": self.state.load,
            "delete": self.state.delete,
            "record": self.state.record,
        }
        self._take = self.faults.take
        self.state.load = self._wrap("load")
        self.state.delete = self._wrap("delete")
        self.state.record = self._record
        self.faults.take = self._arrive

    def close(self) -> None:
        for name in self._originals:
            if name in vars(self.state):
                delattr(self.state, name)
        if "take" in vars(self.faults):
            del self.faults.take

    def __enter__(self) -> SmcTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _arrive(self, method: str, path: str) -> Any:
        self._local.arrived = time.monotonic()
        self._local.pending = None
        return self._take(method, path)

    def _wrap(self, action: str) -> Callable[..., Any]:
        original = self._originals[action]

        def applied(org: str, list_name: str, segment: str | None, query: Any, body: Any) -> Any:
            result = original(org, list_name, segment, query, body)
            fields = [f.strip() for f in query.get("fields", "").split(",")]
            keys = [k.strip() for k in query.get("keyFields", "").split(",")]
            bad = {r["record_index"] for r in result.get("invalid_records") or []}
            positions = [fields.index(k) for k in keys]
            values = tuple(
                "|".join(str(row[p]) for p in positions) for i, row in enumerate(body) if i not in bad
            )
            self._local.pending = (list_name, segment, action, values)
            return result

        return applied

    def _record(self, entry: Any, *args: Any, **kwargs: Any) -> None:
        pending = getattr(self._local, "pending", None)
        self._local.pending = None
        if pending is not None:
            list_name, segment, action, values = pending
            arrived = getattr(self._local, "arrived", time.monotonic())
            self.applications.append(Application(list_name, segment, action, values, arrived, entry.status))
        self._originals["record"](entry, *args, **kwargs)

    def per_key(self, list_name: str, segment: str | None = None) -> collections.Counter[str]:
        return collections.Counter(
            key
            for a in self.applications
            if a.list_name == list_name and a.segment == segment and a.action == "load"
            for key in a.keys
        )


# -- the verdict -----------------------------------------------------------------------------------
@dataclass
class Tally:
    case: str
    requests: int = 0  # HTTP requests Segment made, retries included
    deliveries: int = 0
    events: int = 0
    delivered: int = 0
    rejected_named: int = 0
    lost: int = 0
    duplicate_rows: int = 0
    resent_rows: int = 0  # rows SMC received again (absorbed by the MESSAGE_ID upsert)
    sent_after_ack: int = 0
    smc_calls: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def verify(
    case: str,
    stack: Any,
    workload: Workload,
    run: SimRun,
    tap: SmcTap,
    *,
    replay_memory: bool = True,
    started: float | None = None,
) -> Tally:
    """Assert no loss, no duplicate, the intended membership; return the tallies."""
    rows = stack.sandbox.rows(support.ORG, workload.events_list)
    per_id = collections.Counter(r["MESSAGE_ID"] for r in rows)
    duplicates = {mid: n for mid, n in per_id.items() if n > 1}
    assert not duplicates, f"{case}: MESSAGE_IDs in SMC more than once: {duplicates}"

    lost: list[str] = []
    for mid in workload.row_events:
        final = run.final.get(mid)
        if per_id.get(mid) == 1 and final == "acked":
            continue
        lost.append(f"{mid}: final={final} rows={per_id.get(mid, 0)}")
    for mid in workload.rejected:
        if run.final.get(mid) != "rejected":
            lost.append(f"{mid}: should be named as rejected, final={run.final.get(mid)}")
        assert per_id.get(mid, 0) == 0, f"{case}: {mid} was answered as rejected but is in SMC"
    for mid, final in run.final.items():
        if final in ("gave_up", "dropped") and mid not in lost:
            lost.append(f"{mid}: {final}")
    assert not lost, f"{case}: events neither in SMC once nor refused by name: {lost}"

    unexpected = set(per_id) - workload.row_events
    assert not unexpected, f"{case}: rows no event of the workload should have left: {sorted(unexpected)[:5]}"
    users = {r["USER_ID"] for r in rows}
    assert not users & workload.deleted_users, f"{case}: deleted users still have rows"
    members = {
        m["CUSTOMER_ID"] for m in stack.sandbox.segment_members(support.ORG, "users", workload.segment)
    }
    wanted = {customer for customer, member in workload.membership.items() if member}
    assert members == wanted, f"{case}: segment members {sorted(members)}, intended {sorted(wanted)}"

    loads = tap.per_key(workload.events_list)
    resent = sum(n - 1 for mid, n in loads.items() if mid in workload.row_events and n > 1)
    after_ack = [
        (mid, a.arrived - run.acked_at[mid])
        for a in tap.applications
        if a.list_name == workload.events_list
        for mid in a.keys
        if mid in run.acked_at and a.arrived > run.acked_at[mid]
    ]
    if replay_memory:
        assert not after_ack, f"{case}: events sent to SMC again after Segment had its 200: {after_ack[:5]}"
    delivered = sum(1 for mid in workload.row_events if run.final.get(mid) == "acked")
    delivered += sum(
        1
        for d in workload.deliveries
        for e in d.events
        if e["type"] in ("group", "delete") and run.final.get(e["messageId"]) == "acked"
    )
    smc_calls = [r for r in stack.sandbox.requests_log if "/data" in r.path]
    return Tally(
        case=case,
        requests=len(run.attempts),
        deliveries=len(workload.deliveries),
        events=workload.events,
        delivered=delivered,
        rejected_named=sum(1 for v in run.final.values() if v == "rejected"),
        lost=len(lost),
        duplicate_rows=len(duplicates),
        resent_rows=resent,
        sent_after_ack=len(after_ack),
        smc_calls=len(smc_calls),
        statuses=dict(run.statuses()),
        seconds=round(time.monotonic() - started, 2) if started is not None else 0.0,
    )


# -- figures ---------------------------------------------------------------------------------------
def write_figures(section: str, entries: dict[str, Any]) -> None:
    """Merge figures (name -> figures) into one section of tests/.reliability.json, which
    `python -m load.report` turns into the figures of docs/reliability.md. A partial run (`-k`)
    replaces only the entries it ran; RELIABILITY_FIGURES=0 writes nothing."""
    if os.environ.get("RELIABILITY_FIGURES", "1") == "0":
        return
    try:
        data = json.loads(RELIABILITY_FILE.read_text())
    except (OSError, ValueError):
        data = {}
    merged = data.get(section) if isinstance(data.get(section), dict) else {}
    merged.update(entries)
    data[section] = merged
    data["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RELIABILITY_FILE.write_text(json.dumps(data, indent=2) + "\n")


def iter_events(workload: Workload) -> Iterator[dict[str, Any]]:
    for delivery in workload.deliveries:
        yield from delivery.events
