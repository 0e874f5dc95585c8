"""Queued delivery, consumer side: an SQS batch → the same mappers, batching and SMC client as sync mode.

Rows from every message of the batch are grouped per SMC target, so a batch of 10 messages
holding 1,000 events still costs one SMC call per target. Then each message is settled:

- its delivered (and filtered, duplicate) events are done;
- events SMC refused for good go to the dead-letter queue at once, with SMC's reason;
- events that failed retryably are sent again as a new message, delayed by the back-off of
  handler.requeue (never shorter than SMC's `Retry-After`), unless they would be older than
  `MAX_EVENT_AGE_SECONDS` by then: those are dead-lettered as `expired`;
- an unreadable message goes to the dead-letter queue byte for byte.

The old message is then done and Lambda deletes it; it comes back (a batch item failure) only
when a message it led to could not be written, so nothing is lost. Once SMC answers 429, no
further SMC call starts in the invocation (handler.brake): the rest waits out the
`Retry-After` with the failed events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler import requeue
from handler.brake import Brake
from handler.deadline import Deadline
from handler.delivery import deliver
from handler.errors import ConfigurationError, DependencyUnavailableError
from handler.events import admit, epoch_of, utc_text
from handler.observability import count, flush_metrics, gauge, logger, metrics, tracer
from handler.outcomes import EventResult, Report
from handler.queue import Envelope, QueuedMessage, dead_letter_body, encode, send, unpack
from handler.reporting import record_outcomes
from handler.runtime import Runtime, get_runtime
from handler.settings import Settings, SettingsError

SAFETY_MARGIN_MS = 3000  # left to write the retried and dead-lettered events before Lambda stops us


@dataclass(slots=True)
class _Message:
    message_id: str
    receipt_handle: str
    receive_count: int
    body: str
    envelope: Envelope = field(default_factory=lambda: Envelope([]))
    first: int = 0  # index of its first event in the combined report
    first_seen: float = 0.0  # epoch seconds its events' age counts from
    unreadable: bool = False


def _read(record: dict[str, Any], at: float) -> _Message:
    attributes = record.get("attributes") or {}
    message = _Message(
        message_id=str(record.get("messageId", "")),
        receipt_handle=str(record.get("receiptHandle", "")),
        receive_count=_int(attributes.get("ApproximateReceiveCount"), 1),
        body=str(record.get("body", "")),
    )
    try:
        message.envelope = unpack(message.body)
    except ValueError:
        message.unreadable = True
        return message
    envelope = message.envelope
    # A message without these fields (an older version's, or a hand-made one) counts from when
    # SQS took it; a garbled time too, so that it still expires.
    sent_ms = _int(attributes.get("SentTimestamp"), 0)
    sent = sent_ms / 1000 if sent_ms > 0 else at
    received = epoch_of(envelope.received_at)
    if received is None:
        envelope.received_at, received = utc_text(sent), sent
    first_seen = epoch_of(envelope.first_seen)
    if first_seen is None:
        envelope.first_seen, first_seen = envelope.received_at, received
    message.first_seen = first_seen
    return message


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


@dataclass(slots=True)
class _Plan:
    """What the batch's messages lead to: new delayed messages, dead letters, and for each the
    message it came from (which comes back if that write fails)."""

    retries: list[tuple[QueuedMessage, str]] = field(default_factory=list)
    dead_letters: list[tuple[QueuedMessage, str]] = field(default_factory=list)
    expired: int = 0


def _dead_letter(plan: _Plan, message: _Message, raw: Any, result: EventResult, reason: str) -> None:
    body = dead_letter_body([raw], reason, message.receive_count, message.envelope)
    plan.dead_letters.append((QueuedMessage(body, [result.index], reason), message.message_id))


def _settle_message(message: _Message, report: Report, settings: Settings, at: float, plan: _Plan) -> None:
    if message.unreadable:
        # Kept byte for byte: whatever wrote it can be found and the body inspected.
        letter = QueuedMessage(message.body, [], "unreadable queue message")
        plan.dead_letters.append((letter, message.message_id))
        return
    raws = message.envelope.events
    results = report.results[message.first : message.first + len(raws)]
    retried: list[tuple[Any, EventResult]] = []
    for result in results:
        raw = raws[result.index - message.first]
        if result.outcome == "rejected":
            _dead_letter(plan, message, raw, result, result.reason or "rejected")
        elif result.outcome == "retried":
            retried.append((raw, result))
    if not retried:
        return
    attempt = message.envelope.attempt + 1
    delay = requeue.delay_for(attempt, report.retry_after, at)
    max_age = settings.max_event_age_seconds
    if requeue.expired(message.first_seen, delay, max_age, at):
        plan.expired += len(retried)
        for raw, result in retried:
            within = requeue.describe_age(max_age)
            why = f"expired: not delivered within {within}; last failure: {result.reason}"
            _dead_letter(plan, message, raw, result, why)
        return
    envelope = Envelope([], message.envelope.received_at, message.envelope.first_seen, attempt)
    body = encode([raw for raw, _ in retried], envelope)
    indexes = [result.index for _, result in retried]
    plan.retries.append((QueuedMessage(body, indexes, delay_s=delay), message.message_id))


def _write(runtime: Runtime, url: str, letters: list[tuple[QueuedMessage, str]]) -> set[int]:
    """Send `letters` to `url`; return the positions of those SQS did not take."""
    if not letters:
        return set()
    return send(runtime.sqs, url, [letter for letter, _ in letters])


def consume(event: dict[str, Any], context: LambdaContext | None, runtime: Runtime) -> set[str]:
    """Deliver an SQS batch; return the ids of the messages that must come back to the queue."""
    settings = runtime.settings
    at = requeue.now()
    messages = [_read(record, at) for record in event.get("Records") or []]
    raws: list[Any] = []
    arrivals: list[str] = []  # each event keeps the time the webhook received it
    for message in messages:
        message.first = len(raws)
        raws.extend(message.envelope.events)
        # `_read` gave every readable message one (an unreadable one has no events)
        arrivals.extend([str(message.envelope.received_at)] * len(message.envelope.events))
    report, admitted = admit(raws, settings, arrivals)
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else 60_000
    deadline = Deadline((remaining_ms - SAFETY_MARGIN_MS) / 1000)
    try:
        deliver(admitted, report, settings, runtime.client, deadline, stores=runtime.stores, brake=Brake())
    except (ConfigurationError, DependencyUnavailableError) as exc:
        # The secret unreadable or AWS unreachable: what is not settled waits like an SMC outage.
        count("ConfigurationErrors")
        logger.error("cannot deliver", extra={"detail": str(exc)})
        report.settle_rest("retried", f"configuration: {exc}")

    plan = _Plan()
    for message in messages:
        _settle_message(message, report, settings, at, plan)
    retried = len(plan.retries)  # the events' own retries; deferred dead letters follow them
    refused = _write(runtime, settings.dead_letter_queue_url, plan.dead_letters)
    lettered = len(plan.dead_letters) - len(refused)
    if refused:
        # The dead-letter queue refused them: they wait in the delivery queue instead (a dead
        # letter is a valid queue message), so their message need not come back with the events
        # already delivered or retried in it.
        count("DeadLettersDeferred", len(refused))
        for position in sorted(refused):
            letter, source = plan.dead_letters[position]
            deferred = QueuedMessage(letter.body, letter.indexes, delay_s=requeue.MAX_DELAY_S)
            plan.retries.append((deferred, source))
    lost = _write(runtime, settings.delivery_queue_url, plan.retries)
    requeued = len(plan.retries) - len(lost)
    retry = {plan.retries[position][1] for position in lost}
    count("MessagesRequeued", requeued)
    requeued_events = (len(m.indexes) for i, (m, _) in enumerate(plan.retries[:retried]) if i not in lost)
    count("EventsRequeued", sum(requeued_events))
    count("EventsDeadLettered", lettered)
    count("EventsExpired", plan.expired)
    if retry:
        # The write failed (SQS trouble): the message itself comes back, after the back-off.
        delays = {source: letter.delay_s for letter, source in plan.retries}
        _hide(runtime, [m for m in messages if m.message_id in retry], delays)
    ages = [at - m.first_seen for m in messages if not m.unreadable]
    if ages:
        oldest = max(0.0, max(ages))
        gauge("QueuedEventAgeSeconds", round(oldest))
        gauge("QueuedEventAgePercent", round(100 * oldest / settings.max_event_age_seconds, 1))
    record_outcomes(
        report, None, messages=len(messages), requeued_messages=requeued, returned_messages=len(retry)
    )
    return retry


def _hide(runtime: Runtime, messages: list[_Message], delays: dict[str, int]) -> None:
    """Keep returned messages out of sight for their back-off instead of the queue's default."""
    entries = [
        {
            "Id": str(i),
            "ReceiptHandle": m.receipt_handle,
            "VisibilityTimeout": max(1, delays.get(m.message_id, requeue.BASE_DELAY_S)),
        }
        for i, m in enumerate(messages)
    ]
    for start in range(0, len(entries), 10):
        try:
            runtime.sqs.change_message_visibility_batch(
                QueueUrl=runtime.settings.delivery_queue_url, Entries=entries[start : start + 10]
            )
        except Exception as exc:  # best effort: the queue's own visibility timeout still applies
            logger.warning("could not delay returned messages", extra={"error": type(exc).__name__})


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """SQS event source entry point (`ReportBatchItemFailures` on)."""
    try:
        try:
            retry = consume(event, context, get_runtime())
        except (SettingsError, ConfigurationError, DependencyUnavailableError) as exc:
            # Settings unreadable: nothing is known of the queues, so every message goes back and
            # the queue holds it (its receives are spent: the redrive policy applies) until fixed.
            count("ConfigurationErrors")
            logger.error("cannot deliver", extra={"detail": str(exc)})
            retry = {str(r.get("messageId", "")) for r in event.get("Records") or []}

        def record_handler(record: SQSRecord) -> None:
            if record.message_id in retry:
                raise RuntimeError("the message goes back to the queue")

        processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        flush_metrics()
