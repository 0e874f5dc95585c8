"""Queued mode's brake: once SMC throttles, the invocation starts no further SMC call."""

from __future__ import annotations

from handler.errors import SmcError, SmcRetryableError


class Brake:
    """Queued mode: once SMC answers 429, no further call of the invocation starts, so a throttled
    SMC sees the consumer slow down as a whole; what is left is retried after SMC's `Retry-After`.
    (Sync mode has no brake: Segment's own back-off paces it.)"""

    __slots__ = ("_failure",)

    def __init__(self) -> None:
        self._failure: SmcError | None = None

    def engage(self, failure: SmcError) -> None:
        """Apply the brake if `failure` is SMC throttling (the first one is kept)."""
        if failure.status == 429 and self._failure is None:
            self._failure = failure

    def held(self) -> SmcError | None:
        """The failure a call not started because of the brake is retried with; None: go on."""
        if self._failure is None:
            return None
        return SmcRetryableError(
            "not sent: SMC answered 429 to another call of this batch",
            status=429,
            retry_after=self._failure.retry_after,
        )
