"""The destination's exception family, named by what should happen next."""

from __future__ import annotations


class DestinationError(Exception):
    """Base class of every error this package raises on purpose."""


class RequestError(DestinationError):
    """The HTTP request itself is unacceptable: answered with `status` and never retried by Segment."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class AuthenticationError(RequestError):
    """Neither a valid signature nor a valid bearer token: 401, no SMC call."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "unauthorized", message)


class ConfigurationError(DestinationError):
    """The deployment is misconfigured (settings or secret): retryable, so nothing is lost while fixed."""


class DependencyUnavailableError(DestinationError):
    """An AWS dependency (Secrets Manager, DynamoDB) cannot be reached in time: retryable."""


class SmcError(DestinationError):
    """Base of SMC call failures. Every one is retryable: rows SMC refuses for good are not errors
    but per-row verdicts (`handler.smc.answers`), so an SMC failure never drops an event."""

    reason = "smc_error"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class SmcRetryableError(SmcError):
    """Time-out, connection failure, 408/409/423/425/429/5xx, or SMC's own `ServiceUnavailable` /
    `InternalServerError` result code, that outlived the retry budget."""

    reason = "smc_unavailable"


class SmcDeferredError(SmcRetryableError):
    """A call not made, or rows not confirmed, before Segment's deadline: sent on Segment's retry."""

    reason = "smc_deferred"


class SmcAuthError(SmcError):
    """SMC refused the service account even after re-reading the secret (401/403)."""

    reason = "smc_auth_failed"


class SmcTargetNotFoundError(SmcError):
    """A list, static segment or column the call needs does not exist in SMC (404, `NotFound`, or a
    validation error naming a column): retried while an admin creates it. `missing` names it."""

    reason = "smc_target_not_found"

    def __init__(self, message: str, *, missing: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.missing = missing


class SmcSendUnconfirmedError(SmcError):
    """A transactional send that may have reached SMC, but whose answer was lost (a time-out or a
    dropped connection after the request left): it is never sent again, since a duplicate message
    is worse than a missing one."""

    reason = "smc_send_unconfirmed"


class SmcRefusedError(SmcError):
    """SMC refused the call as a whole without naming a row (`Failed`, `ValidationFailed`, another
    4xx): retried, since nothing shows that the events themselves are at fault."""

    reason = "smc_refused"


class SmcUnconfirmedError(SmcError):
    """SMC answered, but its answer does not prove it holds the rows (a failure result code without
    row detail, or counters that do not account for them): they are sent again."""

    reason = "smc_unconfirmed"
