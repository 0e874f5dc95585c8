"""SMC and Segment credentials from AWS Secrets Manager, cached with a bounded age."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handler.errors import ConfigurationError, DependencyUnavailableError

# A burst of 401s from parallel SMC calls must not turn into a burst of Secrets Manager reads.
_MIN_REFRESH_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """The secret's values; `repr` never shows them."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    shared_secrets: tuple[str, ...] = field(repr=False)  # current first, then the previous one
    bearer_tokens: tuple[str, ...] = field(repr=False)
    api_key_expires_at: datetime | None = None  # UTC; when SMC stops accepting the key

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


def parse_key_expiry(secret: Mapping[str, Any]) -> datetime | None:
    """The optional `apiKeyExpiresAt` (ISO 8601 date or date-time; UTC unless it says otherwise).

    A date alone means the start of that day: the key is treated as expired from then on.
    """
    value = _optional_str(secret, "apiKeyExpiresAt")
    if value is None:
        return None
    try:
        return utc_time(value)
    except ValueError:
        raise ConfigurationError(
            "secret field apiKeyExpiresAt must be an ISO 8601 date or date-time"
        ) from None


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
    return Credentials(
        api_key=values["apiKey"] or "",
        api_secret=values["apiSecret"] or "",
        shared_secrets=shared,
        bearer_tokens=bearer,
        api_key_expires_at=parse_key_expiry(secret),
    )


class CredentialStore:
    """Reads the secret through Powertools Parameters (cached for `max_age` seconds)."""

    def __init__(
        self, secret_id: str, max_age: int, on_read: Callable[[Credentials], None] | None = None
    ) -> None:
        self._secret_id = secret_id
        self._max_age = max_age
        self._on_read = on_read  # sees every successful read (the key-expiry metric)
        self._lock = threading.Lock()
        self._last_forced = 0.0
        self._provider: Any = None  # Powertools SecretsProvider, built on first use

    def get(self) -> Credentials:
        """The cached credentials, fetched when older than `max_age`."""
        return self._fetch(force=False)

    def refresh(self) -> Credentials:
        """Fetch afresh (after SMC answered 401), at most once per few seconds across threads."""
        with self._lock:
            now = time.monotonic()
            force = now - self._last_forced >= _MIN_REFRESH_INTERVAL_S
            if force:
                self._last_forced = now
            return self._fetch(force=force)

    def _fetch(self, *, force: bool) -> Credentials:
        # Imported here: Parameters pulls in boto3, which the first request needs anyway, but
        # importing it at module load would also tax invocations that fail before auth.
        from aws_lambda_powertools.utilities import parameters

        from handler.aws import AWS_CLIENT_CONFIG, session

        if self._provider is None:  # its own client, with time-outs Segment's deadline allows
            self._provider = parameters.SecretsProvider(
                boto_config=AWS_CLIENT_CONFIG, boto3_session=session()
            )
        try:
            secret = self._provider.get(
                self._secret_id, transform="json", force_fetch=force, max_age=self._max_age
            )
        except parameters.exceptions.TransformParameterError as exc:
            raise ConfigurationError("secret is not valid JSON") from exc
        except parameters.exceptions.GetParameterError as exc:
            if "ResourceNotFound" in str(exc) or "AccessDenied" in str(exc):
                raise ConfigurationError("secret cannot be read (not found or access denied)") from exc
            raise DependencyUnavailableError("Secrets Manager is unavailable") from exc
        credentials = parse_secret(secret)
        if self._on_read is not None:
            self._on_read(credentials)
        return credentials
