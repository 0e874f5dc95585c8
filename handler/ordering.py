"""Order-safe state: a change older than the last one applied to the same thing never reaches SMC.

Rows keyed on MESSAGE_ID are safe against Segment's redeliveries and reordering; state that is
*overwritten* — a person's membership of a static segment, a profile's fields — is not: a batch
Segment retries for hours can carry a change older than one applied since.

So each piece of such state has an ordering record (table `STATE_TABLE`, key `order#<sha256 of
organization, list, segment or profile key, match key, value>`, TTL `ORDERING_TTL_SECONDS`). Its
*slots* (one for a membership, one per column of a profile) hold the stamp of the last change
claimed: `<event timestamp, ISO 8601 UTC ms>|<messageId>`, which sorts by time, then by id. A
version number, bumped by every claim, makes each write a compare-and-set.

1. **Claim**, before anything is sent. One BatchGetItem per 100 changes reads the records. A
   record whose slots all hold newer stamps makes its change stale (`duplicate`, never sent); a
   newer stamp in some slots leaves the others to claim; a live lease of another request holds
   the change back. The rest are claimed by one TransactWriteItems per 100: each record is put
   with the change's stamps (the previous ones kept beside them), this request's lease (its
   token, until its work deadline) and the next version, on condition that the version is still
   the one read. A record that changed since is read again and decided again.
2. **Send** only what was claimed.
3. **Settle**, once SMC has answered (`handler.claims`): a change SMC refused for good has its
   slots put back to their previous stamps, so a refused send never advances a record; every
   other claim stands — a change SMC took, and a change it could not take now, whose redelivery
   carries the same stamp and is claimed again — and its lease is released. A change held back
   by another request's lease waits for that release (up to ~0.75 s), then is left to Segment's
   retry (`retried`).

Why the newest change wins every interleaving: each claim is a compare-and-set on the record's
version, so DynamoDB serialises the claims of one record. Of two changes to one member, the
older finds the newer's stamp (stale) or the newer finds the older's lease (held back until the
older one's send is answered); two requests never send changes of one member at once, so SMC
applies them in claim order. A change equal to the record (Segment's redelivery of the same
event) is claimed again and applied again.

When the store cannot be reached, changes are applied as if it did not exist, and counted
(`OrderingStoreUnavailable`): an AWS outage must not block delivery.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from handler.aws import StateTable
from handler.observability import count, logger

KEY_PREFIX = "order#"
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit for TransactWriteItems
MAX_BATCH_GET = 100  # and for BatchGetItem
_NONE = ""  # a stamp that did not exist
_RACE_ROUNDS = 3  # re-reads of records another request changed between our read and our write
# How long a change waits for another request's lease on the same record (it is released as soon
# as that request has SMC's answer); past these it is retried by Segment.
_BUSY_WAITS_S = (0.05, 0.1, 0.2, 0.4)

Verdict = Literal["claimed", "stale", "busy", "unordered"]
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
    operators reading the table) and its stamp. `OrderingStore.claim` fills the rest."""

    key: str
    slots: dict[str, str]
    stamp: str
    verdict: Verdict = "unordered"
    claimed: list[str] = field(default_factory=list)
    written: Item | None = None  # the record as this claim put it (for undo and release)


def _batches(items: Sequence[Claim], size: int) -> Iterator[list[Claim]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _version(item: Item | None) -> int:
    return int(item["ver"]["N"]) if item and "ver" in item else 0


class OrderingStore(StateTable):
    """Claims, undoes and releases changes in the ordering table (module docstring); thread-safe."""

    # -- 1. claim ------------------------------------------------------------------------------
    def claim(self, claims: Sequence[Claim], lease: Lease) -> None:
        """Claim every change; sets each one's `verdict` (and `claimed` slots)."""
        from botocore.exceptions import BotoCoreError, ClientError

        for batch in _batches(claims, MAX_TRANSACTION_ITEMS):
            try:
                self._claim(batch, lease)
            except (BotoCoreError, ClientError) as exc:
                count("OrderingStoreUnavailable")
                logger.warning("ordering store unavailable; applied unordered", extra={"error": str(exc)})
                for change in batch:
                    change.verdict, change.claimed = "unordered", list(change.slots)

    def _claim(self, batch: list[Claim], lease: Lease) -> None:
        waiting = batch
        for wait_s in (0.0, *_BUSY_WAITS_S):
            if wait_s:
                if _now_ms() + wait_s * 1000 > lease.until_ms:
                    break
                time.sleep(wait_s)  # another request's change of the same state is being sent
            waiting = self._claim_round(waiting, lease)
            if not waiting:
                return
        for change in waiting:
            change.verdict = "busy"
        count("OrderingBusy", len(waiting))

    def _claim_round(self, batch: list[Claim], lease: Lease) -> list[Claim]:
        """Read, decide and write; return the changes another request's lease holds back."""
        busy: list[Claim] = []
        unread = batch
        for _ in range(_RACE_ROUNDS):
            records = self._read([change.key for change in unread])
            writes: list[tuple[Claim, Item]] = []
            for change in unread:
                decision = self._decide(change, records.get(change.key), lease)
                if decision == "busy":
                    busy.append(change)
                elif decision is not None:
                    writes.append((change, decision))
            unread = self._write(writes)
            if not unread:
                return busy
        # Records that kept changing under us: other requests are claiming them right now.
        return busy + unread

    def _decide(self, change: Claim, record: Item | None, lease: Lease) -> Item | Literal["busy"] | None:
        """The record this change would put, "busy", or None when the change is stale."""
        record = record or {}
        fresh = [slot for slot in change.slots if record.get(f"s:{slot}", {}).get("S", _NONE) <= change.stamp]
        if not fresh:  # newer stamps everywhere: stale, whoever holds the lease
            change.verdict = "stale"
            count("StaleChangesSkipped")
            return None
        until = record.get("lease", {}).get("N")
        if until is not None and int(until) >= _now_ms() and record.get("owner", {}).get("S") != lease.token:
            return "busy"
        item: Item = {**record, "id": {"S": change.key}}
        for slot in fresh:
            item[f"p:{slot}"] = record.get(f"s:{slot}", {"S": _NONE})
            item[f"s:{slot}"] = {"S": change.stamp}
            item[f"v:{slot}"] = {"S": change.slots[slot]}
        item["lease"] = {"N": str(lease.until_ms)}
        item["owner"] = {"S": lease.token}
        item["ver"] = {"N": str(_version(record) + 1)}
        item["expiration"] = {"N": str(int(time.time()) + self._ttl_seconds)}
        change.claimed = fresh
        return item

    def _read(self, keys: list[str]) -> dict[str, Item]:
        records: dict[str, Item] = {}
        for start in range(0, len(keys), MAX_BATCH_GET):
            request: dict[str, Any] = {
                self._table: {"Keys": [{"id": {"S": key}} for key in keys[start : start + MAX_BATCH_GET]]}
            }
            while request:  # DynamoDB may leave keys unprocessed under load: ask again for those
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    records[item["id"]["S"]] = item
                request = answer.get("UnprocessedKeys") or {}
        return records

    def _write(self, writes: list[tuple[Claim, Item]]) -> list[Claim]:
        """Put the claims; return the changes whose record changed since it was read."""
        if not writes:
            return []
        puts = [self._put(item, _version(item) - 1) for _change, item in writes]
        reasons = self._transact(puts)
        if reasons is None:
            for change, item in writes:
                change.verdict, change.written = "claimed", item
            return []
        changed: list[Claim] = []
        retry: list[tuple[Claim, Item]] = []
        for (change, item), reason in zip(writes, reasons, strict=True):
            code = reason.get("Code") or "None"
            if code == "None":
                retry.append((change, item))  # cancelled with the others: still valid as read
            else:  # ConditionalCheckFailed or TransactionConflict: read it again
                changed.append(change)
        return changed + self._write(retry)

    def _put(self, item: Item, expected_version: int) -> Item:
        """A put that only succeeds over the version read (or, for a new record, over none)."""
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
    def undo(self, claims: Sequence[Claim], lease: Lease) -> None:
        """For changes SMC refused: their slots go back to the previous stamps, the lease goes."""
        self._settle(claims, lease, undo=True)

    def release(self, claims: Sequence[Claim], lease: Lease) -> None:
        """For every other claimed change: the stamps stand, the lease goes."""
        self._settle(claims, lease, undo=False)

    def _settle(self, claims: Sequence[Claim], lease: Lease, *, undo: bool) -> None:
        """One transaction per 100, each put conditional on our claim being the last write; best
        effort, counted when it fails: a lease that stays runs out by itself, and a claim that
        stays is for a change Segment sends again."""
        from botocore.exceptions import BotoCoreError, ClientError

        writes = [(change, self._settled(change, undo)) for change in claims if change.written is not None]
        for start in range(0, len(writes), MAX_TRANSACTION_ITEMS):
            batch = writes[start : start + MAX_TRANSACTION_ITEMS]
            try:
                while batch:
                    puts = [self._put(item, _version(item) - 1) for _change, item in batch]
                    reasons = self._transact(puts)
                    if reasons is None:
                        break
                    # A record another request has claimed since needs nothing from us: its change
                    # is newer. The others are settled without it.
                    kept = zip(batch, reasons, strict=True)
                    batch = [write for write, reason in kept if (reason.get("Code") or "None") == "None"]
            except (BotoCoreError, ClientError) as exc:
                count("OrderingSettleFailures")
                logger.warning("ordering claims not settled", extra={"error": type(exc).__name__})
            else:
                if undo:
                    count("OrderingClaimsUndone", len(writes[start : start + MAX_TRANSACTION_ITEMS]))

    @staticmethod
    def _settled(change: Claim, undo: bool) -> Item:
        """The record after settling the change: its lease gone, and (undo) its stamps put back."""
        written = change.written or {}
        item = {name: value for name, value in written.items() if name not in ("lease", "owner")}
        if undo:
            for slot in change.claimed:
                item[f"s:{slot}"] = written.get(f"p:{slot}", {"S": _NONE})
        item["ver"] = {"N": str(_version(written) + 1)}
        return item


def _now_ms() -> int:
    return int(time.time() * 1000)
