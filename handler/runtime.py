"""What lives across invocations of a warm function: settings, secret cache, HTTP pool, AWS clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handler import profile_columns
from handler.credentials import CredentialStore
from handler.idempotency import IdempotencyGuard
from handler.key_expiry import KeyExpiryReport
from handler.settings import Settings, get_settings
from handler.smc.client import SmcClient
from handler.stores import Stores, stores_for


@dataclass(slots=True)
class Runtime:
    """Built once per process on first use; `reset_runtime` forgets it."""

    settings: Settings
    credentials: CredentialStore
    client: SmcClient
    guard: IdempotencyGuard
    stores: Stores = field(default_factory=Stores)  # empty when STATE_TABLE is not set
    _sqs: Any = field(default=None, repr=False)

    @property
    def sqs(self) -> Any:
        """The SQS client (queued mode only), created on first use."""
        if self._sqs is None:
            from handler.aws import AWS_CLIENT_CONFIG, session

            self._sqs = session().client("sqs", config=AWS_CLIENT_CONFIG)
        return self._sqs


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """Build the runtime on first use (settings are validated here, naming any bad variable)."""
    global _runtime
    if _runtime is None:
        settings = get_settings()
        credentials = CredentialStore(
            settings.secret_id, settings.secret_max_age_seconds, on_read=KeyExpiryReport()
        )
        _runtime = Runtime(
            settings=settings,
            credentials=credentials,
            client=SmcClient(
                settings.smc_base_url,
                settings.organization,
                credentials,
                wait_on_throttle=settings.delivery_mode == "sync",
            ),
            guard=IdempotencyGuard(settings.idempotency_table, settings.idempotency_ttl_seconds),
            stores=stores_for(settings),
        )
    return _runtime


def reset_runtime() -> None:
    """Forget settings, caches and clients (tests; a new configuration)."""
    global _runtime
    _runtime = None
    get_settings.cache_clear()
    profile_columns.forget()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]
