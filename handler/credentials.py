"""SMC and Segment credentials from AWS Secrets Manager, cached with a bounded age."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handler.deadline import Deadline
from handler.errors import ConfigurationError, DependencyUnavailableError

# A burst of 401s from parallel SMC calls must not turn into a burst of Secrets Manager reads.
_MIN_REFRESH_INTERVAL_S = 5.0
# Callers share a read in flight this young; an older one is likely stuck in AWS's back-off (a
# throttled or hung read of an earlier request), and a new read may well succeed at once.
_JOIN_READ_S = 0.5


@dataclass(frozen=True, slots=True)
class Credentials:
    """The secret's values; `repr` never shows them."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    shared_secrets: tuple[str, ...] = field(repr=False)  # current first, then the previous one
    bearer_tokens: tuple[str, ...] = field(repr=False)
    api_key_expires_at: datetime | None = None  # UTC; when SMC stops accepting the key
    # `apiKeyExpiresAt` is there but not a date: only the warning is lost, never the delivery.
    api_key_expiry_unreadable: bool = False

    @property
    def smc_api_key_header(self) -> str:
        """The `X-ApiKey` header value SMC expects: `key:secret`."""
        return f"{self.api_key}:{self.api_secret}"


def _optional_str(secret: Mapping[str, Any], name: str) -> str | None:
    value = secret.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"secret field {name} must be a string")
    return value


KEY_EXPIRY_UNREADABLE = "secret field apiKeyExpiresAt must be an ISO 8601 date or date-time"


def parse_key_expiry(secret: Mapping[str, Any]) -> tuple[datetime | None, bool]:
    """The optional `apiKeyExpiresAt` (ISO 8601 date or date-time; UTC unless it says otherwise),
    and whether it is there but unreadable (`check` fails on that; delivery goes on without it).

    A date alone means the start of that day: the key is treated as expired from then on.
    """
    value = secret.get("apiKeyExpiresAt")
    if value is None or value == "":
        return None, False
    if not isinstance(value, str):
        return None, True
    try:
        return utc_time(value), False
    except ValueError:
        return None, True


def utc_time(value: str) -> datetime:
    """An ISO 8601 date or date-time in UTC (UTC unless it names its offset); `ValueError` if not one."""
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_secret(secret: object) -> Credentials:
    """Validate the secret's JSON; raise `ConfigurationError` naming the bad field, never its value."""
    if not isinstance(secret, dict):
        raise ConfigurationError("secret must be a JSON object")
    values = {name: _optional_str(secret, name) for name in ("apiKey", "apiSecret", "sharedSecret")}
    for name, value in values.items():
        if value is None:
            raise ConfigurationError(f"secret field {name} is required")
    shared = tuple(s for s in (values["sharedSecret"], _optional_str(secret, "sharedSecretPrevious")) if s)
    bearer = tuple(
        t for t in (_optional_str(secret, "bearerToken"), _optional_str(secret, "bearerTokenPrevious")) if t
    )
    expires_at, unreadable = parse_key_expiry(secret)
    return Credentials(
        api_key=values["apiKey"] or "",
        api_secret=values["apiSecret"] or "",
        shared_secrets=shared,
        bearer_tokens=bearer,
        api_key_expires_at=expires_at,
        api_key_expiry_unreadable=unreadable,
    )


class CredentialStore:
    """Reads the secret through Powertools Parameters and keeps it for `max_age` seconds.

    A read that has to go to Secrets Manager is bounded by the caller's deadline: it runs on a
    helper thread, and a caller that runs out of time gets `DependencyUnavailableError` (503)
    while the read goes on and fills the cache for the next request. Parallel callers share one
    young read in flight.
    """

    def __init__(
        self, secret_id: str, max_age: int, on_read: Callable[[Credentials], None] | None = None
    ) -> None:
        self._secret_id = secret_id
        self._max_age = max_age
        self._on_read = on_read  # sees every successful read (the key-expiry metric)
        self._lock = threading.Lock()
        self._last_forced = float("-inf")
        self._cached: tuple[Credentials, float] | None = None  # (credentials, monotonic read time)
        self._reading: tuple[Future[Credentials] | None, float] = (None, 0.0)  # read in flight, since
        self._provider: Any = None  # Powertools SecretsProvider, built on first use

    def get(self, deadline: Deadline | None = None) -> Credentials:
        """The credentials, read again when older than `max_age`."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[1] < self._max_age:
            return cached[0]
        return self._read(deadline)

    def refresh(self, deadline: Deadline | None = None) -> Credentials:
        """Read afresh (after SMC answered 401), at most once per few seconds across threads."""
        with self._lock:
            now = time.monotonic()
            cached = self._cached
            if cached is not None and now - self._last_forced < _MIN_REFRESH_INTERVAL_S:
                return cached[0]
            self._last_forced = now
        return self._read(deadline)

    def _read(self, deadline: Deadline | None) -> Credentials:
        with self._lock:
            reading, started = self._reading
            if reading is None or reading.done() or time.monotonic() - started > _JOIN_READ_S:
                reading = _readers().submit(self._fetch)
                self._reading = (reading, time.monotonic())
        try:
            return reading.result(timeout=None if deadline is None else deadline.remaining())
        except TimeoutError:
            raise DependencyUnavailableError("Secrets Manager did not answer in time") from None

    def _fetch(self) -> Credentials:
        # Imported here: Parameters pulls in boto3, which the first request needs anyway, but
        # importing it at module load would also tax invocations that fail before auth.
        from aws_lambda_powertools.utilities import parameters

        from handler.aws import AWS_CLIENT_CONFIG, session

        if self._provider is None:  # its own client, with time-outs Segment's deadline allows
            self._provider = parameters.SecretsProvider(
                boto_config=AWS_CLIENT_CONFIG, boto3_session=session()
            )
        try:
            # This store keeps the parsed credentials itself: every read here goes to AWS.
            secret = self._provider.get(self._secret_id, transform="json", force_fetch=True)
        except parameters.exceptions.TransformParameterError as exc:
            raise ConfigurationError("secret is not valid JSON") from exc
        except parameters.exceptions.GetParameterError as exc:
            if "ResourceNotFound" in str(exc) or "AccessDenied" in str(exc):
                raise ConfigurationError("secret cannot be read (not found or access denied)") from exc
            raise DependencyUnavailableError("Secrets Manager is unavailable") from exc
        credentials = parse_secret(secret)
        self._cached = (credentials, time.monotonic())
        if self._on_read is not None:
            self._on_read(credentials)
        return credentials


_executor: ThreadPoolExecutor | None = None


def _readers() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="secret-read")
    return _executor
