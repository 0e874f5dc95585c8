"""Transactional messages, sent at most once per messageId (a duplicate e-mail is worse than a
missing one).

Before a message is sent, a record for it is written on condition that none exists (table
`STATE_TABLE`, key `tx#<sha256 of organization and messageId>`, TTL `ORDERING_TTL_SECONDS`):

- the record already says `sent`: the message went out in an earlier attempt → `delivered`;
- it says `sending`: an earlier attempt lost SMC's answer, so nobody knows → `rejected` with the
  reason `unconfirmed transactional send, not repeated` (`TransactionalUnconfirmed`);
- written now: the message is sent, one call per journey. SMC's answer per recipient settles it:
  sent → the record says `sent`, `delivered`; refused (no profile with that key, bad data) →
  the record is removed (a redelivery may send it once the cause is fixed), `rejected` with
  SMC's reason; not sent now (a recipient's own `ServiceUnavailable`, the journey missing) →
  removed, `retried` (so is a 429 or 503: `NOT_PROCESSED_STATUSES`); the answer lost after the
  request left, or another 5xx (neither proves SMC did not send) → the record stays `sending`
  and the message is `rejected` as unconfirmed.

No message is risked when it is bound to be lost or wasted: while SMC fails this request's loads
(an outage a send would likely meet) or while its recipient's profile load is still to be done,
it is not sent but `retried`.

Without a state table, or with DynamoDB unreachable, nothing is sent: the message cannot be sent
at most once, so it is `retried` (Segment sends it again) rather than risked twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from handler.aws import StateTable
from handler.brake import Brake
from handler.deadline import Deadline
from handler.errors import SmcError, SmcSendUnconfirmedError
from handler.events import compact_json
from handler.observability import count, logger
from handler.operations import Operation
from handler.outcomes import Outcome, Report
from handler.smc.client import SmcClient

KEY_PREFIX = "tx#"
UNCONFIRMED = "unconfirmed transactional send, not repeated"
PROFILE_PENDING = "smc_profile_pending: not sent until the recipient's profile load in this batch succeeds"
MAX_TRANSACTION_ITEMS = 100
MAX_BATCH_WRITE = 25
_PART = "transactional message"


def record_key(organization: str, message_id: str) -> str:
    """The at-most-once record's id for one message; hashed like the ordering records."""
    digest = hashlib.sha256(f"{organization}\x1f{message_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return KEY_PREFIX + digest


class SendLedger(StateTable):
    """The at-most-once records of transactional messages (module docstring); thread-safe."""

    def _item(self, key: str, status: str) -> dict[str, Any]:
        expiration = str(int(time.time()) + self._ttl_seconds)
        return {"id": {"S": key}, "status": {"S": status}, "expiration": {"N": expiration}}

    def reserve(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Write a `sending` record for each key that has none: key → None (written now) or the
        status an earlier attempt left. Raises botocore's errors when DynamoDB fails."""
        from botocore.exceptions import ClientError

        found: dict[str, str | None] = {}
        pending = list(dict.fromkeys(keys))
        while pending:
            batch, pending = pending[:MAX_TRANSACTION_ITEMS], pending[MAX_TRANSACTION_ITEMS:]
            while batch:
                puts = [
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._item(key, "sending"),
                            "ConditionExpression": "attribute_not_exists(#id)",
                            "ExpressionAttributeNames": {"#id": "id"},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    }
                    for key in batch
                ]
                try:
                    self.client.transact_write_items(TransactItems=puts)
                except ClientError as exc:
                    reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []  # type: ignore[assignment]
                    if not reasons:
                        raise
                    retry = []
                    for key, reason in zip(batch, reasons, strict=True):
                        if reason.get("Code") == "ConditionalCheckFailed":
                            found[key] = (reason.get("Item") or {}).get("status", {}).get("S", "sending")
                        else:
                            retry.append(key)  # cancelled with the others, or a conflict: again
                    batch = retry
                    continue
                found.update(dict.fromkeys(batch))
                batch = []
        return found

    def settle(self, sent: Sequence[str], released: Sequence[str]) -> None:
        """Mark messages `sent`, and remove the records of those that were not sent (a retry may
        send them). Best effort: a `sending` record that stays makes a redelivery report the
        message unconfirmed, and never sends it twice."""
        from botocore.exceptions import BotoCoreError, ClientError

        requests = [{"PutRequest": {"Item": self._item(key, "sent")}} for key in sent]
        requests += [{"DeleteRequest": {"Key": {"id": {"S": key}}}} for key in released]
        try:
            for start in range(0, len(requests), MAX_BATCH_WRITE):
                pending = {self._table: requests[start : start + MAX_BATCH_WRITE]}
                while pending:
                    answer = self.client.batch_write_item(RequestItems=pending)
                    pending = answer.get("UnprocessedItems") or {}
        except (BotoCoreError, ClientError) as exc:
            count("TransactionalLedgerErrors")
            logger.warning("transactional records not settled", extra={"error": type(exc).__name__})


def send_all(
    operations: list[Operation],
    report: Report,
    client: SmcClient,
    ledger: SendLedger | None,
    organization: str,
    deadline: Deadline,
    brake: Brake | None = None,
    held: SmcError | None = None,
    waiting: AbstractSet[str] = frozenset(),
) -> None:
    """Send every message at most once and settle each event's transactional part.

    `brake` (queued mode): once SMC throttled any call of the invocation, nothing more is sent and
    the rest is retried; a throttled send applies it too. `held`: a failure that stops sending for
    this request (SMC unavailable to this request's loads); nothing is sent and every message is
    retried. `waiting`: recipients whose profile load in this request did not succeed: their
    messages are not sent (SMC's lookup would not find a new profile, and a refusal then would be
    final) but retried, so Segment's retry sends them once the profile is there."""
    if waiting:
        ready = []
        for op in operations:
            if _recipient(op) in waiting:
                _settle(report, op, "retried", PROFILE_PENDING)
            else:
                ready.append(op)
        operations = ready
    if not operations:
        return
    held = held or (brake.held() if brake is not None else None)
    if held is not None:
        for op in operations:
            _settle(report, op, "retried", f"{held.reason}: {held}")
        return
    if ledger is None:
        for op in operations:
            _settle(report, op, "retried", "transactional messages need STATE_TABLE to be sent at most once")
        return
    keys = [record_key(organization, report.results[op.sources[0]].message_id) for op in operations]
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        earlier = ledger.reserve(keys)
    except (BotoCoreError, ClientError) as exc:
        count("TransactionalLedgerErrors")
        logger.warning("transactional records unavailable; nothing sent", extra={"error": type(exc).__name__})
        for op in operations:
            _settle(report, op, "retried", "transactional_ledger_unavailable: DynamoDB did not answer")
        return
    journeys: dict[str, list[tuple[Operation, str]]] = {}
    for op, key in zip(operations, keys, strict=True):
        status = earlier.get(key)
        if status == "sent":
            _settle(report, op, "delivered", None)
        elif status is not None:
            count("TransactionalUnconfirmed")
            _settle(report, op, "rejected", UNCONFIRMED)
        else:
            journeys.setdefault(op.target.list_name, []).append((op, key))
    sent: list[str] = []
    released: list[str] = []
    for journey, batch in journeys.items():
        held = brake.held() if brake is not None else None
        if held is not None:
            released.extend(key for _op, key in batch)
            for op, _key in batch:
                _settle(report, op, "retried", f"{held.reason}: {held}")
            continue
        _send(client, journey, batch, report, deadline, sent, released, brake)
    ledger.settle(sent, released)


def _send(
    client: SmcClient,
    journey: str,
    batch: list[tuple[Operation, str]],
    report: Report,
    deadline: Deadline,
    sent: list[str],
    released: list[str],
    brake: Brake | None,
) -> None:
    body = (
        b'{"items":' + compact_json([op.row[0] for op, _key in batch]).encode("utf-8", "surrogatepass") + b"}"
    )
    try:
        verdicts = client.send_transactional(journey, body, len(batch), deadline)
    except SmcSendUnconfirmedError:
        count("TransactionalUnconfirmed", len(batch))
        for op, _key in batch:  # the records stay `sending`: never sent again
            _settle(report, op, "rejected", UNCONFIRMED)
        return
    except SmcError as exc:
        if brake is not None:
            brake.engage(exc)
        report.note_failure(exc)
        released.extend(key for _op, key in batch)
        for op, _key in batch:
            _settle(report, op, "retried", f"{exc.reason}: {exc}")
        return
    for position, (op, key) in enumerate(batch):
        if position in verdicts.unknown:
            count("TransactionalUnconfirmed")
            _settle(report, op, "rejected", f"{UNCONFIRMED} ({verdicts.unknown[position]})")
        elif position in verdicts.refused:
            released.append(key)
            _settle(report, op, "rejected", verdicts.refused[position])
        elif position in verdicts.later:
            released.append(key)
            _settle(report, op, "retried", f"smc_unavailable: {verdicts.later[position]}")
        else:
            sent.append(key)
            _settle(report, op, "delivered", None)
    count("TransactionalSent", len(verdicts.sent))


def _recipient(op: Operation) -> object:
    item = op.row[0]
    return item.get("recipient") if isinstance(item, dict) else None


def _settle(report: Report, op: Operation, outcome: Outcome, reason: str | None) -> None:
    for index in op.sources:
        report.settle(index, outcome, reason, part=_PART)
