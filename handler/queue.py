"""Queued delivery's messages: pack events into SQS messages, read them back, move dead letters.

A message carries several events (`{"v": 1, "events": [...]}`) so a 1,000-event batch costs a
handful of `SendMessageBatch` calls instead of a hundred. Beside the events it carries when the
webhook received them (`receivedAt`, each event's fallback time), and once retried, when its age
window started (`firstSeen`) and how many tries failed (`attempt`): handler.requeue. Bodies are
ASCII JSON: SQS refuses some characters JSON allows (lone surrogates, U+FFFE/U+FFFF), and one
such event would fail its message on every retry. Limits: 10 entries per call and 256 KiB
per message and per call (SQS's long-standing limit, valid for every queue configuration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handler import requeue
from handler.events import SegmentEvent, utc_text
from handler.observability import count, logger

MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH_BYTES = 256 * 1024
MAX_BATCH_ENTRIES = 10
MESSAGE_VERSION = 1
MAX_ATTEMPT = 1_000_000  # 96 tries a day for 14 days is 1,344
# Room for the envelope around the events: version, the three times and counts, brackets.
_ENVELOPE_BYTES = 192


@dataclass(slots=True)
class QueuedMessage:
    """One SQS message body and the request's event indexes inside it."""

    body: str
    indexes: list[int]
    reason: str | None = None  # dead letters: why, also as the `failure_reason` message attribute
    delay_s: int = 0  # SQS DelaySeconds: retried events wait out their back-off


@dataclass(slots=True)
class Envelope:
    """A message body read back: its events and what the queue knows about them."""

    events: list[Any]
    received_at: str | None = None  # when the webhook received them
    first_seen: str | None = None  # when their age window started (absent: received_at)
    attempt: int = 0  # tries that failed retryably so far

    def metadata(self) -> dict[str, Any]:
        """The envelope's fields, as written into a body."""
        fields: dict[str, Any] = {}
        if self.received_at:
            fields["receivedAt"] = self.received_at
        if self.first_seen and self.first_seen != self.received_at:
            fields["firstSeen"] = self.first_seen
        if self.attempt:
            fields["attempt"] = self.attempt
        return fields


def _encode(raws: list[str], extra: dict[str, Any] | None = None) -> str:
    head = json.dumps({"v": MESSAGE_VERSION, **(extra or {})}, separators=(",", ":"))[:-1]
    return head + ',"events":[' + ",".join(raws) + "]}"


def encode(raws: list[Any], envelope: Envelope, **extra: Any) -> str:
    """A body holding `raws` (decoded events) with `envelope`'s metadata and `extra` fields."""
    parts = [json.dumps(raw, separators=(",", ":")) for raw in raws]
    return _encode(parts, {**envelope.metadata(), **extra})


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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def unpack(body: str) -> Envelope:
    """The events of a message body and what its envelope says of them.

    Raises ValueError when the body is not one of ours.
    """
    data = json.loads(body)
    if (
        not isinstance(data, dict)
        or data.get("v") != MESSAGE_VERSION
        or not isinstance(data.get("events"), list)
    ):
        raise ValueError("not a destination queue message")
    attempt = data.get("attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 < attempt <= MAX_ATTEMPT:
        attempt = 0  # absent or not ours: counted afresh (the age window still bounds the tries)
    return Envelope(
        events=list(data["events"]),
        received_at=_text(data.get("receivedAt")),
        first_seen=_text(data.get("firstSeen")),
        attempt=attempt,
    )


def dead_letter_body(raws: list[Any], reason: str, receive_count: int, envelope: Envelope) -> str:
    """A message for the dead-letter queue: the events, unchanged, their envelope, and why.

    The body is a valid queue message, so moving it back (redrive) needs no conversion.
    """
    return encode(raws, envelope, failure={"reason": reason, "receiveCount": receive_count})


def redriven_body(body: str, first_seen: str) -> str:
    """A dead letter as it goes back to the delivery queue: without its `failure`, its age window
    starting again at `first_seen` and its attempt count at 0 (the operator fixed the cause; the
    events get their full time again). `receivedAt` stays: it is each event's fallback time for
    ordering. A body that is not ours goes back unchanged, as it came."""
    try:
        envelope = unpack(body)
    except ValueError:
        return body
    return encode(envelope.events, Envelope([], envelope.received_at, first_seen))


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
            if messages[position].delay_s:
                entry["DelaySeconds"] = messages[position].delay_s
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


@dataclass(slots=True)
class RedriveResult:
    """What a redrive did: messages moved, and messages it could not move or could not remove."""

    moved: int = 0
    not_sent: int = 0  # still in the dead-letter queue only: run the redrive again
    not_deleted: int = 0  # in both queues now: delivered once, the dead letter is left behind
    stopped: str | None = None  # a whole call failed: the redrive ended early, naming why

    @property
    def handled(self) -> int:
        """Messages it received and dealt with, whatever became of them."""
        return self.moved + self.not_sent + self.not_deleted

    @property
    def complete(self) -> bool:
        """Whether every message it received was moved and removed."""
        return not (self.not_sent or self.not_deleted or self.stopped)


def redrive(
    client: Any, dead_letter_url: str, queue_url: str, limit: int = 100_000, wait_s: int = 5
) -> RedriveResult:
    """Move dead letters back to the delivery queue (after the cause is fixed).

    Long polling (`wait_s`, at most 20) so that a queue whose messages are spread over its
    servers is drained, not sampled; it ends once a poll finds nothing. Each message is deleted
    from the dead-letter queue only after the delivery queue accepted it, so a failure part-way
    leaves every message in one queue or the other; a message that could not be sent stays hidden
    for the rest of the run, so it is counted once. SMC loads are upserts, so a message moved
    twice still adds no row.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    result = RedriveResult()
    while result.handled < limit:
        want = min(10, limit - result.handled)
        try:
            answer = client.receive_message(
                QueueUrl=dead_letter_url,
                MaxNumberOfMessages=want,
                WaitTimeSeconds=max(0, min(20, wait_s)),
                VisibilityTimeout=300,
            )
        except (BotoCoreError, ClientError) as exc:
            result.stopped = f"reading the dead-letter queue failed: {exc}"
            return result
        batch = answer.get("Messages", [])
        if not batch:
            return result
        first_seen = utc_text(requeue.now())
        entries = [
            {"Id": str(i), "MessageBody": redriven_body(m["Body"], first_seen)} for i, m in enumerate(batch)
        ]
        try:
            sent_answer = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            result.not_sent += len(batch)
            result.stopped = f"writing to the delivery queue failed: {exc}"
            return result
        sent = sorted(int(s["Id"]) for s in sent_answer.get("Successful", []))
        result.not_sent += len(batch) - len(sent)
        if not sent:
            continue
        done = [{"Id": str(i), "ReceiptHandle": batch[i]["ReceiptHandle"]} for i in sent]
        try:
            deleted_answer = client.delete_message_batch(QueueUrl=dead_letter_url, Entries=done)
            deleted = len(deleted_answer.get("Successful", []))
        except (BotoCoreError, ClientError) as exc:
            result.not_deleted += len(done)
            result.stopped = f"removing moved messages from the dead-letter queue failed: {exc}"
            return result
        result.moved += deleted
        result.not_deleted += len(done) - deleted
    return result
