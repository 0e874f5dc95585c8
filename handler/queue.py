"""Queued delivery, webhook side: pack admitted events into SQS messages and enqueue them.

A message carries several events (`{"v": 1, "events": [...]}`) so a 1,000-event batch costs a
handful of `SendMessageBatch` calls instead of a hundred. Bodies are ASCII JSON: SQS refuses some
characters JSON allows (lone surrogates, U+FFFE/U+FFFF), and one such event would fail its
message on every retry. Limits: 10 entries per call and 256 KiB
per message and per call (SQS's long-standing limit, valid for every queue configuration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handler.events import SegmentEvent
from handler.observability import count, logger

MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH_BYTES = 256 * 1024
MAX_BATCH_ENTRIES = 10
MESSAGE_VERSION = 1
_ENVELOPE_BYTES = 64


@dataclass(slots=True)
class QueuedMessage:
    """One SQS message body and the request's event indexes inside it."""

    body: str
    indexes: list[int]
    reason: str | None = None  # dead letters: why, also as the `failure_reason` message attribute


def _encode(raws: list[str], extra: dict[str, Any] | None = None) -> str:
    head = json.dumps({"v": MESSAGE_VERSION, **(extra or {})}, separators=(",", ":"))[:-1]
    return head + ',"events":[' + ",".join(raws) + "]}"


def pack(events: list[SegmentEvent], received_at: str) -> list[QueuedMessage]:
    """Fill messages up to the size limit, keeping request order."""
    extra = {"receivedAt": received_at}
    messages: list[QueuedMessage] = []
    parts: list[str] = []
    indexes: list[int] = []
    size = _ENVELOPE_BYTES
    for event in events:
        raw = json.dumps(event.raw, separators=(",", ":"))
        length = len(raw.encode("utf-8", "surrogatepass")) + 1
        if parts and size + length > MAX_MESSAGE_BYTES:
            messages.append(QueuedMessage(_encode(parts, extra), indexes))
            parts, indexes, size = [], [], _ENVELOPE_BYTES
        parts.append(raw)
        indexes.append(event.index)
        size += length
    if parts:
        messages.append(QueuedMessage(_encode(parts, extra), indexes))
    return messages


def unpack(body: str) -> tuple[list[Any], str | None]:
    """The events of a message body and when the webhook received them.

    Raises ValueError when the body is not one of ours.
    """
    data = json.loads(body)
    if (
        not isinstance(data, dict)
        or data.get("v") != MESSAGE_VERSION
        or not isinstance(data.get("events"), list)
    ):
        raise ValueError("not a destination queue message")
    received_at = data.get("receivedAt")
    return list(data["events"]), received_at if isinstance(received_at, str) else None


def dead_letter_body(raws: list[Any], reason: str, receive_count: int) -> str:
    """A message for the dead-letter queue: the events, unchanged, and why they are there.

    The body is a valid queue message, so moving it back (redrive) needs no conversion.
    """
    failure = {"failure": {"reason": reason, "receiveCount": receive_count}}
    return _encode([json.dumps(raw, separators=(",", ":")) for raw in raws], failure)


def _calls(messages: list[QueuedMessage]) -> list[list[int]]:
    calls: list[list[int]] = []
    current: list[int] = []
    size = 0
    for position, message in enumerate(messages):
        length = len(message.body.encode("utf-8", "surrogatepass"))
        if current and (len(current) >= MAX_BATCH_ENTRIES or size + length > MAX_BATCH_BYTES):
            calls.append(current)
            current, size = [], 0
        current.append(position)
        size += length
    if current:
        calls.append(current)
    return calls


def send(client: Any, queue_url: str, messages: list[QueuedMessage]) -> set[int]:
    """Enqueue `messages` in as few `SendMessageBatch` calls as the limits allow.

    Returns the positions of the messages SQS did not accept (a failed call fails all of its own).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    failed: set[int] = set()
    for call in _calls(messages):
        entries: list[dict[str, Any]] = []
        for position in call:
            entry: dict[str, Any] = {"Id": str(position), "MessageBody": messages[position].body}
            reason = messages[position].reason
            if reason:
                attribute = {"DataType": "String", "StringValue": reason[:256]}
                entry["MessageAttributes"] = {"failure_reason": attribute}
            entries.append(entry)
        try:
            answer = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            count("QueueSendErrors")
            logger.warning("enqueue failed", extra={"error": type(exc).__name__, "messages": len(call)})
            failed.update(call)
            continue
        count("QueueSendCalls")
        for failure in answer.get("Failed", []):
            failed.add(int(failure["Id"]))
            logger.warning("message not enqueued", extra={"code": failure.get("Code")})
    return failed


def redrive(client: Any, dead_letter_url: str, queue_url: str, limit: int = 100_000) -> int:
    """Move dead letters back to the delivery queue (after the cause is fixed); returns how many.

    Each message is deleted from the dead-letter queue only after the delivery queue accepted it,
    so a failure part-way leaves every message in one queue or the other. SMC loads are upserts,
    so a message moved twice still adds no row.
    """
    moved = 0
    while moved < limit:
        answer = client.receive_message(
            QueueUrl=dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        )
        batch = answer.get("Messages", [])
        if not batch:
            return moved
        entries = [{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(batch)]
        result = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        sent = {int(s["Id"]) for s in result.get("Successful", [])}
        done = [{"Id": str(i), "ReceiptHandle": batch[i]["ReceiptHandle"]} for i in sorted(sent)]
        if done:
            client.delete_message_batch(QueueUrl=dead_letter_url, Entries=done)
        moved += len(done)
        if len(done) < len(batch):
            raise RuntimeError(
                f"the delivery queue refused {len(batch) - len(done)} message(s); moved {moved}"
            )
    return moved
