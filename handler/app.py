"""Lambda entry: Segment → auth → parse → validate/filter → (idempotent) mappers → SMC → answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.auth import authenticate, check_shape
from handler.credentials import CredentialStore
from handler.deadline import request_deadline
from handler.delivery import deliver
from handler.errors import ConfigurationError, DependencyUnavailableError, RequestError
from handler.events import SegmentEvent, admit
from handler.idempotency import IdempotencyGuard, Response, request_key
from handler.observability import count, count_per_type, flush_metrics, logger, metrics, timing, tracer
from handler.outcomes import Report
from handler.request import check_envelope, parse_payload, read_request
from handler.responses import error_response, json_response
from handler.settings import Settings, SettingsError, get_settings
from handler.smc.client import SmcClient

MAX_OUTCOME_LOG_LINES = 200  # per request; the summary line always carries the totals


@dataclass(slots=True)
class Runtime:
    """What lives across invocations of a warm function: settings, secret cache, HTTP pool, store."""

    settings: Settings
    credentials: CredentialStore
    client: SmcClient
    guard: IdempotencyGuard


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """Build the runtime on first use (settings are validated here, naming any bad variable)."""
    global _runtime
    if _runtime is None:
        settings = get_settings()
        credentials = CredentialStore(settings.secret_id, settings.secret_max_age_seconds)
        _runtime = Runtime(
            settings=settings,
            credentials=credentials,
            client=SmcClient(settings.smc_base_url, settings.organization, credentials),
            guard=IdempotencyGuard(settings.idempotency_table, settings.idempotency_ttl_seconds),
        )
    return _runtime


def reset_runtime() -> None:
    """Forget settings, caches and clients (tests; a new configuration)."""
    global _runtime
    _runtime = None
    get_settings.cache_clear()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]


class RetryableAnswer(Exception):
    """Carries a retryable answer out of the idempotent part, so it is never remembered."""

    def __init__(self, response: Response) -> None:
        super().__init__("retryable answer")
        self.response = response


def _received_at(event: dict[str, Any]) -> str:
    epoch_ms = (event.get("requestContext") or {}).get("timeEpoch")
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC) if isinstance(epoch_ms, int) else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _log_outcomes(report: Report) -> None:
    logged = 0
    for result in report.results:
        if result.outcome == "delivered":
            continue
        if logged >= MAX_OUTCOME_LOG_LINES:
            break
        logged += 1
        logger.info(
            "event not delivered",
            extra={
                "messageId": result.message_id,
                "eventType": result.event_type,
                "outcome": result.outcome,
                "reason": result.reason,
            },
        )


def _record(report: Report, status: int, replayed: bool = False) -> None:
    totals = report.counts()
    per_type: dict[str, int] = {}
    for result in report.results:
        per_type[result.event_type] = per_type.get(result.event_type, 0) + 1
    count_per_type("EventsReceived", per_type)
    count("EventsReceived", len(report.results))
    for outcome, number in totals.items():
        count(f"Events{outcome.capitalize()}", number)
    summary: dict[str, object] = {"status": status, "replayed": replayed}
    summary.update(totals)
    logger.info("request settled", extra=summary)


def _deliver(
    report: Report, admitted: list[SegmentEvent], runtime: Runtime, context: LambdaContext | None
) -> Response:
    remaining = context.get_remaining_time_in_millis() if context is not None else None
    deadline = request_deadline(runtime.settings.response_deadline_ms, remaining)
    deliver(admitted, report, runtime.settings, runtime.client, deadline)
    status = report.status()
    response = json_response(status, report.body(), report.retry_after)
    if status in (429, 503):
        raise RetryableAnswer(response)
    return response


def handle(event: dict[str, Any], context: LambdaContext | None) -> Response:
    """The whole request, answered with exactly one status; every event gets one outcome."""
    request_id = ""
    try:
        request = read_request(event)
        request_id = request.request_id
        check_envelope(request)
        runtime = get_runtime()
        method = authenticate(request.headers, request.body, runtime.credentials.get())
        payload = parse_payload(request.body)
        check_shape(method, payload.shape)
        report, admitted = admit(payload.events, runtime.settings, _received_at(event))
        tracer.put_annotation("events", str(len(report.results)))
        logger.append_keys(shape=payload.shape, auth=method)
        if not admitted:
            response = json_response(report.status(), report.body())
            _record(report, response["statusCode"])
            _log_outcomes(report)
            return response
        key = request_key(result.message_id for result in report.results)
        try:
            response, replayed = runtime.guard.run(
                key, lambda: _deliver(report, admitted, runtime, context), context
            )
        except RetryableAnswer as answer:
            _record(report, answer.response["statusCode"])
            _log_outcomes(report)
            return answer.response
        if replayed:
            for replayed_event in admitted:
                report.settle(replayed_event.index, "duplicate", "request already delivered")
            _record(report, response["statusCode"], replayed=True)
            response = {**response, "headers": {**response.get("headers", {}), "X-Idempotent-Replay": "true"}}
        else:
            _record(report, response["statusCode"])
            _log_outcomes(report)
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
