"""Bounded AWS SDK clients: a slow or throttled AWS service must not outlast Segment's wait."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from botocore.config import Config

if TYPE_CHECKING:
    import boto3

# botocore's defaults (60 s connect and read time-outs, 3 attempts, throttling back-off of up to
# 20 s) hold a request far past Segment's 5 s. Nothing gains from waiting: a Secrets Manager
# failure is answered 503 (Segment retries) and an idempotency store failure is delivered without
# the store. Worst case per call: 2 x (0.5 s connect or 1 s read) + <= 1 s back-off.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=0.5,
    read_timeout=1.0,
    # `total_max_attempts` counts the first try; botocore's `max_attempts` here would count
    # retries only (3 attempts in all, a third second of waiting on a hung store).
    retries={"mode": "standard", "total_max_attempts": 2},
)
# The state table's client sends requests of up to 100 items built by this code alone; botocore's
# client-side check of them against the API's shapes cost ~10 ms of this process's CPU per
# 100-item claim (measured against moto, 2026-12-02), on the path the membership calls wait on.
# DynamoDB checks every request itself, and its ValidationException is what `handler.ordering`
# treats as a defect (changes retried); the client-side ParamValidationError was a BotoCoreError,
# which reads as an outage (changes applied unordered).
STATE_CLIENT_CONFIG = AWS_CLIENT_CONFIG.merge(Config(parameter_validation=False))

# What a boto3 session reads from the environment once and keeps.
_SESSION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL")
_session: tuple[tuple[str | None, ...], boto3.session.Session] | None = None
_session_lock = threading.Lock()


def session() -> boto3.session.Session:
    """One boto3 session for every AWS client of the process (a new one if the environment changed).

    Clients of one session share its loaded endpoint rules and service data: the second client
    costs ~7 ms instead of the ~50 ms of a client on a session of its own (cold start).
    """
    global _session
    key = tuple(os.environ.get(name) for name in _SESSION_ENV)
    with _session_lock:
        if _session is None or _session[0] != key:
            import boto3

            _session = (key, boto3.session.Session())
        return _session[1]


class StateTable:
    """A table of `STATE_TABLE`'s records (ordering, transactional sends): its name, their time
    to live, and a DynamoDB client of this process's session, created on first use."""

    def __init__(self, table: str, ttl_seconds: int, client: Any = None) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._client = client

    @property
    def client(self) -> Any:
        """The DynamoDB client (bounded like every AWS client here)."""
        if self._client is None:
            self._client = session().client("dynamodb", config=STATE_CLIENT_CONFIG)
        return self._client
