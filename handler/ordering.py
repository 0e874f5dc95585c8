"""Order-safe state: a change older than the last one applied to the same thing never reaches SMC.

Rows keyed on MESSAGE_ID are safe against Segment's redeliveries and reordering; state that is
*overwritten* — a person's membership of a static segment, a profile's fields — is not: a batch
Segment retries for hours can carry a change older than one applied since.

So each piece of such state has an ordering record (table `STATE_TABLE`, key `order#<sha256 of
organization, list, segment or profile key, match key, value>`, TTL `ORDERING_TTL_SECONDS`). Its
*slots* (one for a membership, one per column of a profile) hold the stamp of the last change
claimed: `<event time, ISO 8601 UTC ms>|<messageId>`, which sorts by time, then by id; beside each
stamp (`s:`) the state it set (`v:`), and while a claim is open the stamp and state before it
(`p:`, `pv:`). A version number, bumped by every write, makes each write a compare-and-set.

0. **Within the request** (`resolve`), changes of one record are decided first, newest wins per
   slot: an older change keeps only the slots no newer one of the request sets, and one left with
   none is stale. So one request never claims a record twice, nor sends two of its changes.
1. **Claim**, before anything is sent. One BatchGetItem per 100 records reads them. A change whose
   slots all hold newer stamps is stale (`duplicate`, never sent); a newer stamp in some slots
   leaves the others to claim. A live lease of another request on the record holds the change
   back (`busy`) — unless it is older even than what that request's claim replaced, which no
   outcome of it can make current (stale). The rest are claimed by one TransactWriteItems per
   100 (a request's batches of 100 at once): each record is put with its changes' stamps (every
   slot's current stamp kept beside them as its previous one), this
   request's lease (its token, until its work deadline) and the next version, on condition that
   the version is still the one read. A record that changed since is read again and decided
   again. A change held back waits for the other lease (short waits, ending before the calls
   stop waiting for the claims), then is left to Segment's retry (`retried`, `ordering_busy`).
2. **Send** only what was claimed.
3. **Settle**, once SMC has answered (`handler.claims`): a change SMC took stands; a change it did
   not take — refused for good, or failed (`retried`) — has its slots put back to the stamps and
   states before it: a failed send never advances a record. The records whose changes all stand
   are not written again: one item, `order#lease-<token>`, says the request is done, which
   releases its leases on all of them at once (a second transaction of every record would cost
   as much as the claim, and twice its write capacity); a claim that meets a live lease of
   another request reads that item before it holds back (only then: an extra read under
   contention, none otherwise), and if it is there reads the record again, consistently: read
   before the item was, the record may predate that request's undo. The item is written only
   once every undo is in place; when an undo fails (or DynamoDB keeps cancelling it for any
   reason but a newer claim of the record), the leases run out by themselves instead. SMC may
   have applied a failed send whose answer was lost; putting the record back is still safe,
   because Segment retries that change (same stamp), which is claimed and applied again, so the
   newest change lands last. Had the claim stood instead, an older change arriving before that
   retry would be dropped as stale for a change SMC may never apply. Either way the lease goes;
   the `p:` slots, read only under a live lease, are set again by the next claim.

Why the newest change wins every interleaving: each claim is a compare-and-set on the record's
version, so DynamoDB serialises the claims of one record. Of two changes to one member, the
older finds the newer's stamp (stale) or the newer finds the older's lease (held back until the
older one's send is answered); two requests never send changes of one member at once, so SMC
applies them in claim order. A change equal to the record (Segment's redelivery of the same
event) is claimed again and applied again.

When the store cannot be reached (or answers too slowly), changes are applied as if it did not
exist, and counted (`OrderingStoreUnavailable`): an AWS outage must not block delivery. A request
the store refuses as malformed (`ValidationException`) is no outage but a defect: its changes are
retried (`ordering_error`, `OrderingStoreErrors`), never sent unordered.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from handler.aws import StateTable
from handler.observability import count, in_thread_with_trace, logger

KEY_PREFIX = "order#"
LEASE_PREFIX = KEY_PREFIX + "lease-"  # a request's "done" item; inside the prefix its IAM policy allows
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit for TransactWriteItems
MAX_BATCH_GET = 100  # and for BatchGetItem
MAX_BATCHES_AT_ONCE = 4  # claim transactions of one request in flight together
_NONE = ""  # a stamp that did not exist
_RACE_ROUNDS = 3  # re-reads of records another request changed between our read and our write
_executor: ThreadPoolExecutor | None = None  # `_batch_pool`
_SETTLE_ROUNDS = 3  # attempts of an undo transaction that DynamoDB cancels (`_put_back`)
# How long a change waits for another request's lease on the same record (it is released as soon
# as that request has SMC's answer); a wait is only started if it and one more round trip end
# before the caller stops waiting for the claims, so a held-back change is decided `busy`, never
# left undecided (and sent unordered) by the caller's time-out.
_BUSY_WAITS_S = (0.05, 0.1, 0.2, 0.4)
_ROUND_S = 0.1
# Errors that say the request was malformed, not that the store is unavailable.
_REQUEST_FAULTS = frozenset({"ValidationException", "SerializationException"})

# unordered: not decided (yet); busy: another request holds or is writing the record; error: the
# store refused the request as malformed.
Verdict = Literal["claimed", "stale", "busy", "error", "unordered"]
Item = dict[str, Any]  # a DynamoDB item in the low-level client's form


def record_key(*parts: str) -> str:
    """The ordering record's id for a piece of state; hashed, so no person's id is stored."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return KEY_PREFIX + digest


def stamp(timestamp: str, message_id: str) -> str:
    """A change's place in time: its event timestamp, then its messageId as the tie-breaker."""
    return f"{timestamp}|{message_id}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A request's hold on the records it claims: its own token, until its work deadline."""

    token: str
    until_ms: int

    @classmethod
    def for_seconds(cls, seconds: float) -> Lease:
        """A new token, holding for `seconds` from now."""
        return cls(uuid.uuid4().hex, _now_ms() + int(seconds * 1000))


@dataclass(slots=True)
class Claim:
    """One change to one record: the slots it overwrites (slot → the state it sets, kept for
    operators reading the table) and its stamp. `resolve` and `OrderingStore.claim` fill the rest."""

    key: str
    slots: dict[str, str]
    stamp: str
    verdict: Verdict = "unordered"
    own: list[str] = field(default_factory=list)  # slots no newer change of the request sets
    claimed: list[str] = field(default_factory=list)
    written: Item | None = None  # the record as the claim put it (shared by the record's changes)


def resolve(claims: Sequence[Claim]) -> None:
    """Decide the changes of one request among themselves: per record and slot, the newest change
    owns the slot (`own`); a change that owns none is stale. No I/O, so it holds whatever the
    store does later."""
    owners: dict[tuple[str, str], Claim] = {}
    for change in claims:
        for slot in change.slots:
            current = owners.get((change.key, slot))
            if current is None or change.stamp > current.stamp:
                owners[(change.key, slot)] = change
    for change in claims:
        change.own = [slot for slot in change.slots if owners[(change.key, slot)] is change]
        if not change.own:
            change.verdict = "stale"
            count("StaleChangesSkipped")


@dataclass(slots=True)
class _Record:
    """The changes of one request to one record (their `own` slots are disjoint)."""

    key: str
    changes: list[Claim]

    def pending(self) -> list[Claim]:
        return [change for change in self.changes if change.verdict in ("unordered", "busy")]


def _records(claims: Sequence[Claim]) -> list[_Record]:
    records: dict[str, _Record] = {}
    for change in claims:
        if change.verdict == "unordered" and change.own:
            records.setdefault(change.key, _Record(change.key, [])).changes.append(change)
    return list(records.values())


def _batch_pool() -> ThreadPoolExecutor:
    """Threads for a request's claim batches, kept for the life of the process. Its own pool: the
    claim runs on the delivery's, and waiting there for tasks queued behind it could deadlock."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_BATCHES_AT_ONCE, thread_name_prefix="ordering")
    return _executor


def _batches(items: Sequence[_Record], size: int) -> Iterator[list[_Record]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _version(item: Item | None) -> int:
    return int(item["ver"]["N"]) if item and "ver" in item else 0


def _text(item: Item, name: str) -> str:
    return str(item.get(name, {}).get("S", _NONE))


class OrderingStore(StateTable):
    """Claims and settles changes in the ordering table (module docstring); thread-safe."""

    # -- 1. claim ------------------------------------------------------------------------------
    def claim(self, claims: Sequence[Claim], lease: Lease, wait_until_ms: int | None = None) -> None:
        """Claim every change `resolve` left undecided; sets each one's `verdict` (and `claimed`
        slots). Waits on other requests' leases end before `wait_until_ms` (default: the lease's
        end)."""
        from botocore.exceptions import BotoCoreError, ClientError

        until = lease.until_ms if wait_until_ms is None else min(wait_until_ms, lease.until_ms)

        def claim_batch(batch: list[_Record]) -> None:
            try:
                self._claim(batch, lease, until)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in _REQUEST_FAULTS:
                    self._unavailable(batch, exc)
                    return
                count("OrderingStoreErrors")
                logger.error("ordering store refused the request", extra={"error": code})
                for record in batch:
                    for change in record.pending():
                        change.verdict = "error"
            except BotoCoreError as exc:
                self._unavailable(batch, exc)

        batches = list(_batches(_records(claims), MAX_TRANSACTION_ITEMS))
        if len(batches) == 1:
            claim_batch(batches[0])
            return
        # The batches hold disjoint records: claimed at once, the claim costs one batch's round
        # trips instead of one per 100 records (a 1,000-event request with profiles on has ~3).
        for _ in _batch_pool().map(in_thread_with_trace(claim_batch), batches):
            pass

    @staticmethod
    def _unavailable(batch: list[_Record], exc: Exception) -> None:
        count("OrderingStoreUnavailable")
        logger.warning("ordering store unavailable; applied unordered", extra={"error": str(exc)})
        for record in batch:
            for change in record.pending():
                # A change seen held by another request's lease stays held back: sending it now
                # would race that request's change, which the outage does not make any safer.
                if change.verdict == "unordered":
                    change.claimed = list(change.own)

    def _claim(self, batch: list[_Record], lease: Lease, wait_until_ms: int) -> None:
        waiting = batch
        for wait_s in (0.0, *_BUSY_WAITS_S):
            if wait_s:
                if _now_ms() + (wait_s + _ROUND_S) * 1000 > wait_until_ms:
                    break
                time.sleep(wait_s)  # another request's change of the same state is being sent
            waiting = self._claim_round(waiting, lease)
            if not waiting:
                return
        count("OrderingBusy", sum(len(record.pending()) for record in waiting))

    def _claim_round(self, batch: list[_Record], lease: Lease) -> list[_Record]:
        """Read, decide and write; return the records another request holds (their pending
        changes marked `busy`, which stands unless a later round claims them)."""
        busy: list[_Record] = []
        unread = batch
        for _ in range(_RACE_ROUNDS):
            found = self._read([record.key for record in unread])
            released = self._released(found.values(), lease)
            if released:
                # Read before the done item was, such a record may predate its request's undo:
                # read again, consistently, it is as that request left it (undos come first).
                outdated = [key for key, item in found.items() if _text(item, "owner") in released]
                found.update(self._read(outdated, consistent=True))
            writes: list[tuple[_Record, Item, list[Claim]]] = []
            for record in unread:
                decision = self._decide(record, found.get(record.key), lease, released)
                if decision == "busy":
                    busy.append(record)
                elif decision is not None:
                    writes.append((record, *decision))
            unread = self._write(writes)
            if not unread:
                break
        # Records that kept changing under us: other requests are claiming them right now.
        busy.extend(unread)
        for record in busy:
            for change in record.pending():
                change.verdict = "busy"
        return busy

    def _released(self, items: Iterable[Item], lease: Lease) -> frozenset[str]:
        """The tokens of the other requests' live leases among `items` whose requests are done."""
        tokens = {_text(item, "owner") for item in items if _foreign(item, lease)}
        if not tokens:
            return frozenset()
        done = self._read([LEASE_PREFIX + token for token in sorted(tokens)])
        return frozenset(key.removeprefix(LEASE_PREFIX) for key in done)

    def _decide(
        self, record: _Record, item: Item | None, lease: Lease, released: frozenset[str]
    ) -> tuple[Item, list[Claim]] | Literal["busy"] | None:
        """The item the record's changes would put (and those changes), "busy", or None when
        every pending change is stale. `released`: tokens of done requests (their leases are void)."""
        item = item or {}
        foreign = _foreign(item, lease) and _text(item, "owner") not in released
        fresh: list[Claim] = []
        held = False
        for change in record.pending():
            # Under another request's open claim, a slot may yet go back to its `p:` stamp.
            floor = "p" if foreign else "s"
            if not any(_text(item, f"{floor}:{slot}") <= change.stamp for slot in change.own):
                change.verdict = "stale"  # older than anything the record can hold
                count("StaleChangesSkipped")
            elif foreign:
                held = True
            else:
                change.claimed = [slot for slot in change.own if _text(item, f"s:{slot}") <= change.stamp]
                fresh.append(change)
        if held:
            return "busy"
        if not fresh:
            return None
        put: Item = {**item, "id": {"S": record.key}}
        # Every slot's previous stamp becomes its current one, so `p:` says exactly what this
        # claim replaces: a slot it leaves alone cannot go back, whatever an earlier request that
        # was released without a rewrite (`settle`) left in its `p:`.
        for name in item:
            if name.startswith("s:"):
                slot = name[2:]
                put[f"p:{slot}"], put[f"pv:{slot}"] = item[name], {"S": _text(item, f"v:{slot}")}
        for change in fresh:
            for slot in change.claimed:
                put[f"s:{slot}"] = {"S": change.stamp}
                put[f"v:{slot}"] = {"S": change.slots[slot]}
        put["lease"] = {"N": str(lease.until_ms)}
        put["owner"] = {"S": lease.token}
        put["ver"] = {"N": str(_version(item) + 1)}
        put["expiration"] = {"N": str(int(time.time()) + self._ttl_seconds)}
        return put, fresh

    def _read(self, keys: list[str], *, consistent: bool = False) -> dict[str, Item]:
        # BatchGetItem refuses a key list with duplicates; `_records` has none, and this keeps
        # it so whatever the caller passes.
        keys = list(dict.fromkeys(keys))
        records: dict[str, Item] = {}
        for start in range(0, len(keys), MAX_BATCH_GET):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"id": {"S": key}} for key in keys[start : start + MAX_BATCH_GET]],
                    "ConsistentRead": consistent,
                }
            }
            while request:  # DynamoDB may leave keys unprocessed under load: ask again for those
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    records[item["id"]["S"]] = item
                request = answer.get("UnprocessedKeys") or {}
        return records

    def _write(self, writes: list[tuple[_Record, Item, list[Claim]]]) -> list[_Record]:
        """Put the claims; return the records that changed since they were read."""
        if not writes:
            return []
        reasons = self._transact([self._put(item) for _record, item, _changes in writes])
        if reasons is None:
            for _record, item, changes in writes:
                for change in changes:
                    change.verdict, change.written = "claimed", item
            return []
        changed: list[_Record] = []
        retry: list[tuple[_Record, Item, list[Claim]]] = []
        for write, reason in zip(writes, reasons, strict=True):
            if (reason.get("Code") or "None") == "None":
                retry.append(write)  # cancelled with the others: still valid as read
            else:  # ConditionalCheckFailed or TransactionConflict: read it again
                changed.append(write[0])
        return changed + self._write(retry)

    def _put(self, item: Item) -> Item:
        """A put that only succeeds over the version read (or, for a new record, over none)."""
        expected_version = _version(item) - 1
        put: Item = {"TableName": self._table, "Item": item}
        if expected_version == 0:
            put.update(
                ConditionExpression="attribute_not_exists(#id)", ExpressionAttributeNames={"#id": "id"}
            )
        else:
            put.update(
                ConditionExpression="#ver = :ver",
                ExpressionAttributeNames={"#ver": "ver"},
                ExpressionAttributeValues={":ver": {"N": str(expected_version)}},
            )
        return {"Put": put}

    def _transact(self, items: list[Item]) -> list[Item] | None:
        """Run one transaction; None when it went through, else why each item failed."""
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons: list[Item] | None = exc.response.get("CancellationReasons")  # type: ignore[assignment]
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException" or not reasons:
                raise
            return reasons
        return None

    # -- 3. settle -----------------------------------------------------------------------------
    def _put_back(self, batch: list[Item]) -> list[Item]:
        """Put one transaction's records back; return those still not put back.

        Only `ConditionalCheckFailed` lets an undo go: another request has claimed the record
        since (after our lease ended), and its change is newer. Any other reason — `None` (the
        transaction was cancelled for another item), a conflict, throttling — leaves the put to
        do, tried again a few times."""
        for _ in range(_SETTLE_ROUNDS):
            reasons = self._transact([self._put(item) for item in batch])
            if reasons is None:
                return []
            if len(reasons) != len(batch):  # not an answer about these items: nothing is known
                continue
            batch = [
                item
                for item, reason in zip(batch, reasons, strict=True)
                if reason.get("Code") != "ConditionalCheckFailed"
            ]
            if not batch:
                return []
        return batch

    def settle(self, undo: Sequence[Claim], keep: Sequence[Claim], lease: Lease) -> None:
        """Close the claims: `undo` (changes SMC did not take) go back to the stamps and states
        before them, `keep` (changes it took) stand; every lease goes.

        A record with a change to undo is put back (one put per record, one transaction per 100,
        each conditional on our claim being the record's last write); then one item marks the
        request done, which releases the leases of the records left as claimed (module
        docstring). Best effort, counted when it fails: a lease that stays runs out by itself."""
        from botocore.exceptions import BotoCoreError, ClientError

        undone = {id(change) for change in undo}
        records: dict[str, list[Claim]] = {}
        for change in (*undo, *keep):
            if change.written is not None:
                records.setdefault(change.key, []).append(change)
        writes = [
            _settled(changes, undone)
            for changes in records.values()
            if any(id(change) in undone for change in changes)
        ]
        error: str | None = None
        try:
            unsettled = sum(
                len(self._put_back(writes[start : start + MAX_TRANSACTION_ITEMS]))
                for start in range(0, len(writes), MAX_TRANSACTION_ITEMS)
            )
            if unsettled:
                error = "undo cancelled"  # the leases must stay on the records not put back
            elif len(writes) < len(records):  # some records still carry our lease: release them
                self.client.put_item(TableName=self._table, Item=_done(lease))
        except (BotoCoreError, ClientError) as exc:
            error = type(exc).__name__
        if error is not None:
            count("OrderingSettleFailures")
            logger.warning("ordering claims not settled", extra={"error": error})
        if undone:
            count("OrderingClaimsUndone", len(undone))


def _foreign(item: Item, lease: Lease) -> bool:
    """Whether another request's lease on the record is live (its request may not be done)."""
    until = item.get("lease", {}).get("N")
    return until is not None and int(until) >= _now_ms() and _text(item, "owner") != lease.token


def _done(lease: Lease) -> Item:
    """The item saying the lease's request is done; it outlives the lease by a minute (the
    records' leases are void anyway once they end), so TTL removes it soon after."""
    return {
        "id": {"S": LEASE_PREFIX + lease.token},
        "expiration": {"N": str(lease.until_ms // 1000 + 60)},
    }


def _settled(changes: list[Claim], undone: set[int]) -> Item:
    """The record put back: lease gone, undone slots back to their previous stamp and state. Its
    `p:` slots are read only under a live lease, and the next claim sets them (`_decide`)."""
    written = changes[0].written or {}
    item = {name: value for name, value in written.items() if name not in ("lease", "owner")}
    for change in changes:
        if id(change) in undone:
            for slot in change.claimed:
                item[f"s:{slot}"] = written.get(f"p:{slot}", {"S": _NONE})
                item[f"v:{slot}"] = written.get(f"pv:{slot}", {"S": _NONE})
    item["ver"] = {"N": str(_version(written) + 1)}
    return item


def _now_ms() -> int:
    return int(time.time() * 1000)
