"""The SMC service-account key's expiry date (`apiKeyExpiresAt` in the secret): days left, and the
`SmcKeyDaysLeft` metric that the stack's alarm watches."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from handler.credentials import KEY_EXPIRY_UNREADABLE, Credentials
from handler.observability import count, gauge, logger

WARN_DAYS = 30  # `smc-destination check` warns from here; the alarm fires below 14 (template.yaml)


def days_left(expires_at: datetime, now: datetime | None = None) -> float:
    """Days until `expires_at`; negative once it has passed."""
    return (expires_at - (now or datetime.now(UTC))).total_seconds() / 86400


class KeyExpiryReport:
    """Emits `SmcKeyDaysLeft` on the first secret read of the process, and again only when the
    date changes (a rotated key): one data point per cold start, not one per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reported: datetime | None = None
        self._unreadable = False

    def __call__(self, credentials: Credentials) -> None:
        """A `CredentialStore` read hook."""
        if credentials.api_key_expiry_unreadable:
            with self._lock:
                first, self._unreadable = not self._unreadable, True
            if first:
                count("SmcKeyExpiryUnreadable")
                logger.warning("no SmcKeyDaysLeft", extra={"detail": KEY_EXPIRY_UNREADABLE})
            return
        expires_at = credentials.api_key_expires_at
        with self._lock:
            if expires_at is None or expires_at == self._reported:
                return
            self._reported = expires_at
        gauge("SmcKeyDaysLeft", round(days_left(expires_at), 1))
