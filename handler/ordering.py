"""Order-safe state: a change older than the last one applied to the same thing never reaches SMC.

Rows keyed on MESSAGE_ID are safe against Segment's redeliveries and reordering; state that is
*overwritten* — a person's membership of a static segment, a profile's fields — is not: a batch
Segment retries for hours can carry a change older than one applied since.

So each piece of such state has an ordering record (table `STATE_TABLE`, key `order#<sha256 of
organization, list, segment or profile key, match key, value>`, TTL `ORDERING_TTL_SECONDS`). Its
*slots* (one for a membership, one per column of a profile) hold the stamp of the last change
claimed: `<event timestamp, ISO 8601 UTC ms>|<messageId>`, which sorts by time, then by id.

1. **Claim**, before anything is sent: one TransactWriteItems per 100 changes sets each record's
   slots to the change's stamp — keeping the previous stamps beside them — on condition that no
   slot holds a newer stamp and no *other* request holds the record's lease; the lease (this
   request's token, until its work deadline) is taken with it. A failing condition cancels the
   transaction, and DynamoDB names each failing record and returns it: a newer stamp in every
   slot → the change is stale (`duplicate`, never sent); in some slots → only the others are
   claimed; another request's live lease → the change is retried (Segment sends it again once
   that request is done); the rest are claimed by a second transaction. No read is needed: the
   condition is the check, and a cancelled transaction carries the records.
2. **Send** only what was claimed.
3. **Undo** what SMC did not take: its slots go back to their previous stamps (one transaction,
   on condition that the lease is still ours), so a failed send never advances a record. A
   successful claim keeps its lease until it runs out.

Why the newest change wins every interleaving: DynamoDB serialises the claims of one record. Of
two changes to one member, the older finds the newer's stamp (stale) or the newer finds the
older's lease (retried, and claimed once the older is applied or undone); so two requests never
send changes of one member at once, and SMC applies them in claim order. A change equal to the
record (Segment's redelivery of the same event) is claimed again and applied again.

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

from handler.observability import count, logger
from handler.settings import Settings

KEY_PREFIX = "order#"
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit for TransactWriteItems
_NONE = ""  # a previous stamp that did not exist
_CONFLICT_RETRIES = 2  # another transaction touching the same record at the same moment

Verdict = Literal["claimed", "stale", "busy", "unordered"]


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
    operators reading the table) and its stamp. `claimed` is filled by `OrderingStore.claim`."""

    key: str
    slots: dict[str, str]
    stamp: str
    verdict: Verdict = "unordered"
    claimed: list[str] = field(default_factory=list)


def _chunks(items: Sequence[Claim]) -> Iterator[list[Claim]]:
    for start in range(0, len(items), MAX_TRANSACTION_ITEMS):
        yield list(items[start : start + MAX_TRANSACTION_ITEMS])


class OrderingStore:
    """Claims and undoes changes in the ordering table (module docstring); thread-safe."""

    def __init__(self, table: str, ttl_seconds: int, client: Any = None) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._client = client

    @property
    def client(self) -> Any:
        """The DynamoDB client, created on first use."""
        if self._client is None:
            from handler.aws import AWS_CLIENT_CONFIG, session

            self._client = session().client("dynamodb", config=AWS_CLIENT_CONFIG)
        return self._client

    def claim(self, claims: Sequence[Claim], lease: Lease) -> None:
        """Claim every change (step 1); sets each one's `verdict` and `claimed` slots."""
        from botocore.exceptions import BotoCoreError, ClientError

        for batch in _chunks(claims):
            try:
                self._claim(batch, lease)
            except (BotoCoreError, ClientError) as exc:
                count("OrderingStoreUnavailable")
                logger.warning(
                    "ordering store unavailable; changes applied unordered", extra={"error": str(exc)}
                )
                for change in batch:
                    change.verdict, change.claimed = "unordered", list(change.slots)

    def _claim(self, batch: list[Claim], lease: Lease) -> None:
        pending = {change.key: (change, list(change.slots)) for change in batch}
        conflicts = 0
        while pending:
            items = [self._claim_item(change, slots, lease) for change, slots in pending.values()]
            reasons = self._transact(items)
            if reasons is None:
                for change, slots in pending.values():
                    change.verdict, change.claimed = "claimed", slots
                return
            pending, conflicts = self._sort_out(pending, reasons, lease, conflicts)

    def _transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Run one transaction; None when it went through, else why each item failed."""
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons: list[dict[str, Any]] | None = exc.response.get("CancellationReasons")  # type: ignore[assignment]
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException" or not reasons:
                raise
            return reasons
        return None

    def _sort_out(
        self,
        pending: dict[str, tuple[Claim, list[str]]],
        reasons: list[dict[str, Any]],
        lease: Lease,
        conflicts: int,
    ) -> tuple[dict[str, tuple[Claim, list[str]]], int]:
        """From a cancelled claim: settle the changes that failed, return the ones to claim again."""
        retry: dict[str, tuple[Claim, list[str]]] = {}
        conflict = False
        for (key, (change, slots)), reason in zip(list(pending.items()), reasons, strict=True):
            code = reason.get("Code") or "None"
            if code == "None":
                retry[key] = (change, slots)
            elif code == "ConditionalCheckFailed":
                fresh = _fresh_slots(change, slots, reason.get("Item") or {}, lease)
                if fresh is None:
                    change.verdict = "busy"
                    count("OrderingBusy")
                elif not fresh:
                    change.verdict = "stale"
                    count("StaleChangesSkipped")
                else:
                    retry[key] = (change, fresh)
            else:  # TransactionConflict: another request writes this record right now
                conflict = True
                retry[key] = (change, slots)
        if conflict:
            conflicts += 1
            if conflicts > _CONFLICT_RETRIES:
                for change, _slots in retry.values():
                    change.verdict = "busy"
                return {}, conflicts
            time.sleep(0.01 * conflicts)
        return retry, conflicts

    def _claim_item(self, change: Claim, slots: list[str], lease: Lease) -> dict[str, Any]:
        names = {"#exp": "expiration", "#lease": "lease", "#owner": "owner"}
        values: dict[str, Any] = {
            ":stamp": {"S": change.stamp},
            ":none": {"S": _NONE},
            ":exp": {"N": str(int(time.time()) + self._ttl_seconds)},
            ":lease": {"N": str(lease.until_ms)},
            ":owner": {"S": lease.token},
            ":now": {"N": str(_now_ms())},
        }
        sets = ["#exp = :exp", "#lease = :lease", "#owner = :owner"]
        conditions = ["(attribute_not_exists(#lease) OR #lease < :now OR #owner = :owner)"]
        for position, slot in enumerate(slots):
            names.update({f"#{kind}{position}": f"{kind}:{slot}" for kind in ("s", "p", "v")})
            values[f":v{position}"] = {"S": change.slots[slot]}
            sets += [
                f"#p{position} = if_not_exists(#s{position}, :none)",
                f"#s{position} = :stamp",
                f"#v{position} = :v{position}",
            ]
            conditions.append(f"(attribute_not_exists(#s{position}) OR #s{position} <= :stamp)")
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"id": {"S": change.key}},
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def undo(self, claims: Sequence[Claim], lease: Lease) -> None:
        """Roll back claims SMC did not take (step 3); best effort, counted when it fails."""
        from botocore.exceptions import BotoCoreError, ClientError

        claimed = [change for change in claims if change.verdict == "claimed" and change.claimed]
        for batch in _chunks(claimed):
            try:
                while batch:
                    reasons = self._transact([self._undo_item(change, lease) for change in batch])
                    if reasons is None:
                        count("OrderingClaimsUndone", len(batch))
                        break
                    # A record whose lease another request took over needs no undo: that
                    # request's change is newer. The others are undone without it.
                    kept = zip(batch, reasons, strict=True)
                    batch = [change for change, reason in kept if (reason.get("Code") or "None") == "None"]
            except (BotoCoreError, ClientError) as exc:
                # The claim stands for a change Segment sends again (it was retried or rejected):
                # its redelivery matches the claim and is applied.
                count("OrderingUndoFailures")
                logger.warning("ordering claims not undone", extra={"error": type(exc).__name__})

    def _undo_item(self, change: Claim, lease: Lease) -> dict[str, Any]:
        names = {"#owner": "owner", "#lease": "lease"}
        values: dict[str, Any] = {":owner": {"S": lease.token}, ":stamp": {"S": change.stamp}}
        sets: list[str] = []
        conditions = ["#owner = :owner"]
        for position, slot in enumerate(change.claimed):
            names.update({f"#s{position}": f"s:{slot}", f"#p{position}": f"p:{slot}"})
            sets.append(f"#s{position} = #p{position}")
            conditions.append(f"#s{position} = :stamp")
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"id": {"S": change.key}},
                "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE #lease",
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }


def _fresh_slots(change: Claim, slots: list[str], item: dict[str, Any], lease: Lease) -> list[str] | None:
    """The slots `change` may still claim in `item`, or None if another request's lease holds it."""
    until = item.get("lease", {}).get("N")
    owner = item.get("owner", {}).get("S")
    if until is not None and int(until) >= _now_ms() and owner != lease.token:
        return None
    return [slot for slot in slots if item.get(f"s:{slot}", {}).get("S", _NONE) <= change.stamp]


def store_for(settings: Settings) -> OrderingStore | None:
    """The ordering store the settings name, or None when `STATE_TABLE` is not set."""
    return (
        OrderingStore(settings.state_table, settings.ordering_ttl_seconds) if settings.state_table else None
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
