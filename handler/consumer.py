"""Queued delivery, consumer side: an SQS batch → the same mappers, batching and SMC client as sync mode.

Rows from every message of the batch are grouped per SMC target, so a batch of 10 messages
holding 1,000 events still costs one SMC call per target. Only messages holding a retryable
failure go back to the queue (Powertools partial batch response). Events SMC refuses for good,
unreadable messages, and retryable failures on their last allowed receive go to the dead-letter
queue with the reason, so nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.deadline import Deadline
from handler.delivery import deliver
from handler.errors import ConfigurationError, DependencyUnavailableError
from handler.events import admit
from handler.observability import count, flush_metrics, logger, metrics, tracer
from handler.queue import QueuedMessage, dead_letter_body, send, unpack
from handler.reporting import record_outcomes
from handler.runtime import Runtime, get_runtime
from handler.settings import SettingsError

SAFETY_MARGIN_MS = 3000  # left to report failures and write dead letters before Lambda stops us


@dataclass(slots=True)
class _Message:
    message_id: str
    receipt_handle: str
    receive_count: int
    body: str
    raws: list[Any] = field(default_factory=list)
    first: int = 0  # index of its first event in the combined report
    unreadable: bool = False


def _read(record: dict[str, Any]) -> _Message:
    attributes = record.get("attributes") or {}
    message = _Message(
        message_id=str(record.get("messageId", "")),
        receipt_handle=str(record.get("receiptHandle", "")),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1") or 1),
        body=str(record.get("body", "")),
    )
    try:
        message.raws, _ = unpack(message.body)
    except ValueError:
        message.unreadable = True
    return message


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _received_at(messages: list[_Message]) -> str:
    for message in messages:
        if not message.unreadable:
            try:
                _, received_at = unpack(message.body)
            except ValueError:
                continue
            if received_at:
                return received_at
    return _now()


def consume(event: dict[str, Any], context: LambdaContext | None, runtime: Runtime) -> set[str]:
    """Deliver an SQS batch; return the message ids that must come back (retryable failures)."""
    settings = runtime.settings
    messages = [_read(record) for record in event.get("Records") or []]
    raws: list[Any] = []
    for message in messages:
        message.first = len(raws)
        raws.extend(message.raws)
    report, admitted = admit(raws, settings, _received_at(messages))
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else 60_000
    deadline = Deadline((remaining_ms - SAFETY_MARGIN_MS) / 1000)
    deliver(admitted, report, settings, runtime.client, deadline, stores=runtime.stores)

    retry: set[str] = set()
    dead_letters: list[tuple[QueuedMessage, str]] = []  # (dead letter, source message id)
    for message in messages:
        if message.unreadable:
            # Kept byte for byte: whatever wrote it can be found and the body inspected.
            letter = QueuedMessage(message.body, [], "unreadable queue message")
            dead_letters.append((letter, message.message_id))
            continue
        results = report.results[message.first : message.first + len(message.raws)]
        last_try = message.receive_count >= settings.max_receives
        if any(r.outcome == "retried" for r in results) and not last_try:
            # The whole message comes back; its rejected events are dead-lettered on the final pass.
            retry.add(message.message_id)
            continue
        for result in results:
            if result.outcome in ("rejected", "retried"):
                reason = result.reason or "unknown"
                raw = message.raws[result.index - message.first]
                body = dead_letter_body([raw], reason, message.receive_count)
                dead_letters.append((QueuedMessage(body, [result.index], reason), message.message_id))
    if dead_letters:
        failed = send(runtime.sqs, settings.dead_letter_queue_url, [letter for letter, _ in dead_letters])
        count("EventsDeadLettered", len(dead_letters) - len(failed))
        # A dead letter that could not be written keeps its message in the queue: nothing is lost.
        retry.update(source for i, (_, source) in enumerate(dead_letters) if i in failed)
    if retry and report.retry_after:
        _slow_down(runtime, messages, retry, report.retry_after)
    record_outcomes(report, None, messages=len(messages), retried_messages=len(retry))
    return retry


def _slow_down(runtime: Runtime, messages: list[_Message], retry: set[str], seconds: float) -> None:
    """On SMC 429/Retry-After, hide the failed messages for that long instead of burning receives."""
    timeout = int(min(43_200, max(1, seconds)))
    entries = [
        {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": timeout}
        for i, m in enumerate(messages)
        if m.message_id in retry
    ]
    for start in range(0, len(entries), 10):
        try:
            runtime.sqs.change_message_visibility_batch(
                QueueUrl=runtime.settings.delivery_queue_url, Entries=entries[start : start + 10]
            )
        except Exception as exc:  # best effort: the queue's own visibility timeout still applies
            logger.warning("could not delay retried messages", extra={"error": type(exc).__name__})


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """SQS event source entry point (`ReportBatchItemFailures` on)."""
    try:
        try:
            retry = consume(event, context, get_runtime())
        except (SettingsError, ConfigurationError, DependencyUnavailableError) as exc:
            # Every message goes back: the queue holds them until the configuration is fixed.
            count("ConfigurationErrors")
            logger.error("cannot deliver", extra={"detail": str(exc)})
            retry = {str(r.get("messageId", "")) for r in event.get("Records") or []}

        def record_handler(record: SQSRecord) -> None:
            if record.message_id in retry:
                raise RuntimeError("retryable SMC failure; the message goes back to the queue")

        processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        flush_metrics()
