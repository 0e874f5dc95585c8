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
    """An AWS dependency (Secrets Manager) cannot be reached: retryable."""


class SmcError(DestinationError):
    """Base of SMC call failures; `retryable` says whether Segment should send the events again."""

    retryable = True
    reason = "smc_error"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class SmcRetryableError(SmcError):
    """Time-out, connection failure, 429 or 5xx that outlived the retry budget."""

    reason = "smc_unavailable"


class SmcAuthError(SmcError):
    """SMC refused the service account even after re-reading the secret (401/403)."""

    reason = "smc_auth_failed"


class SmcTargetNotFoundError(SmcError):
    """The organization, list or segment does not exist (404): retried while an admin creates it."""

    reason = "smc_target_not_found"


class SmcPermanentError(SmcError):
    """SMC refused the request itself (400 without row details): resending it cannot help."""

    retryable = False
    reason = "smc_rejected_request"
