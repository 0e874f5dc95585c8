"""Lambda entry: Segment → auth → parse → validate/filter → (idempotent) mappers → SMC → answer.

In queued mode (`DELIVERY_MODE=queued`) the last step enqueues to SQS instead; `consumer.py`
then delivers with the same mappers and client.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.auth import authenticate
from handler.deadline import Budget, request_budget
from handler.delivery import Preparation, deliver
from handler.errors import ConfigurationError, DependencyUnavailableError, RequestError
from handler.events import SegmentEvent, admit, utc_text
from handler.idempotency import Response, RetryLater, request_key
from handler.observability import count, flush_metrics, logger, metrics, timing, tracer
from handler.outcomes import Report
from handler.progress import Progress
from handler.queue import pack, send
from handler.reporting import record_outcomes
from handler.request import check_envelope, parse_payload, read_request
from handler.responses import error_response, json_response
from handler.runtime import Runtime, get_runtime, reset_runtime
from handler.settings import SettingsError

__all__ = ["handle", "lambda_handler", "reset_runtime"]


def _received_at(event: dict[str, Any]) -> str:
    epoch_ms = (event.get("requestContext") or {}).get("timeEpoch")
    return utc_text(epoch_ms / 1000 if isinstance(epoch_ms, int) else time.time())


def _answer(report: Report, sent: list[SegmentEvent]) -> Response:
    """The response for a settled report; a retryable one is raised with what SMC took already."""
    status = report.status()
    response = json_response(status, report.body(), report.retry_after)
    if status in (429, 503):
        raise RetryLater(response, Progress.of(report, sent))
    return response


def _deliver(
    report: Report,
    admitted: list[SegmentEvent],
    runtime: Runtime,
    budget: Budget,
    prepared: Preparation,
    earlier: Progress | None,
) -> Response:
    deliver(
        admitted, report, runtime.settings, runtime.client, budget.work, prepared, earlier, runtime.stores
    )
    return _answer(report, admitted)


def _enqueue(
    report: Report, admitted: list[SegmentEvent], runtime: Runtime, received_at: str, earlier: Progress | None
) -> Response:
    pending = earlier.settle_known(admitted, report) if earlier else admitted
    messages = pack(pending, received_at)
    failed = send(runtime.sqs, runtime.settings.delivery_queue_url, messages)
    for position, message in enumerate(messages):
        for index in message.indexes:
            if position in failed:
                report.settle(index, "retried", "queue_unavailable: SQS did not accept the message")
            else:
                report.settle(index, "enqueued")
    return _answer(report, admitted)


def handle(event: dict[str, Any], context: LambdaContext | None) -> Response:
    """The whole request, answered with exactly one status; every event gets one outcome."""
    request_id = ""
    try:
        request = read_request(event)
        request_id = request.request_id
        check_envelope(request)
        runtime = get_runtime()
        budget = request_budget(
            (event.get("requestContext") or {}).get("timeEpoch"),
            runtime.settings.response_deadline_ms,
            context.get_remaining_time_in_millis() if context is not None else None,
        )
        method = authenticate(request.headers, request.body, runtime.credentials.get(budget.answer))
        payload = parse_payload(request.body)
        received_at = _received_at(event)
        report, admitted = admit(payload.events, runtime.settings, received_at)
        tracer.put_annotation("events", str(len(report.results)))
        logger.append_keys(shape=payload.shape, auth=method)
        if budget.waited_ms:
            timing("ArrivalToHandlerLatency", budget.waited_ms)
        if not admitted:
            response = json_response(report.status(), report.body())
            record_outcomes(report, response["statusCode"])
            return response
        prepared: Preparation | None = None
        if runtime.settings.delivery_mode == "queued":

            def work(earlier: Progress | None) -> Response:
                return _enqueue(report, admitted, runtime, received_at, earlier)
        else:
            # Mapping and batching start now, on a pool thread, and overlap the idempotency
            # record's write; the SMC calls still wait for that write (see `Preparation`).
            prepared = preparation = Preparation(admitted, runtime.settings, runtime.client)

            def work(earlier: Progress | None) -> Response:
                return _deliver(report, admitted, runtime, budget, preparation, earlier)

        key = request_key(result.message_id for result in report.results)
        try:
            response, replayed = runtime.guard.run(key, work, context, budget.open, budget.answer)
        except RetryLater as answer:
            record_outcomes(report, answer.response["statusCode"])
            return answer.response
        finally:
            if prepared is not None:
                prepared.cancel()
        if replayed:
            for replayed_event in admitted:
                report.settle(replayed_event.index, "duplicate", "request already delivered")
            response = {**response, "headers": {**response.get("headers", {}), "X-Idempotent-Replay": "true"}}
        record_outcomes(report, response["statusCode"], replayed=replayed)
        return response
    except RequestError as exc:
        count("RequestsRefused")
        logger.info("request refused", extra={"status": exc.status, "error": exc.code, "detail": exc.message})
        return error_response(exc.status, exc.code, exc.message, request_id)
    except IdempotencyAlreadyInProgressError:
        # Segment drops a 409; 429 makes it retry (and slow down) while the twin finishes.
        count("RequestsInProgressElsewhere")
        return error_response(429, "in_progress", "the same events are being delivered now", request_id, 2)
    except (SettingsError, ConfigurationError) as exc:
        count("ConfigurationErrors")
        logger.error("configuration error", extra={"detail": str(exc)})
        return error_response(500, "configuration_error", str(exc), request_id)
    except DependencyUnavailableError as exc:
        count("DependencyErrors")
        logger.error("dependency unavailable", extra={"detail": str(exc)})
        return error_response(503, "dependency_unavailable", str(exc), request_id)
    except Exception as exc:  # a bug must still answer (5xx: Segment retries) and leave a trace
        count("UnexpectedErrors")
        logger.exception("unexpected error", extra={"error": type(exc).__name__})
        return error_response(500, "internal_error", "unexpected error; Segment will retry", request_id)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Response:
    """API Gateway HTTP API (payload v2) entry point, `POST /segment`."""
    started = time.monotonic()
    try:
        return handle(event, context)
    finally:
        timing("HandlerLatency", (time.monotonic() - started) * 1000)
        flush_metrics()
