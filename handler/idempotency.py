"""Request-level idempotency (Powertools, DynamoDB): a redelivered request is answered from memory.

The key is a hash of the request's sorted event ids, not of the API Gateway event (whose
requestContext changes per delivery) nor of the body text (whose spacing may change). One
DynamoDB write opens the record and one closes it, whatever the batch size; rows are also keyed
on MESSAGE_ID in SMC, so a batch that Segment re-forms with other events still never duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.aws import AWS_CLIENT_CONFIG, session
from handler.observability import count, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction

Response = dict[str, Any]


def request_key(message_ids: Iterable[str]) -> str:
    """A canonical hash of the events' ids: the same events in any order give the same key."""
    digest = hashlib.sha256()
    for message_id in sorted(message_ids):
        digest.update(message_id.encode("utf-8", "surrogatepass") + b"\x00")
    return digest.hexdigest()


@dataclass(slots=True)
class _Attempt:
    replayed: bool = False
    result: Response | None = None
    error: BaseException | None = None


def _run_work(request: dict[str, str], work: Callable[[], Response]) -> Response:
    # The decorated function: `request` is only the key; `work` does the delivery.
    return work()


@dataclass(slots=True)
class IdempotencyGuard:
    """Runs delivery at most once per request key; remembers only final answers.

    Raise from `work` for a retryable outcome: Powertools then deletes the in-progress record so
    Segment's retry really retries (a returned 503 would be replayed to every retry).
    """

    table_name: str
    ttl_seconds: int
    _attempt: _Attempt = field(default_factory=_Attempt)
    _run: Callable[..., Response] | None = None
    _config: IdempotencyConfig | None = None

    def _mark_replay(self, response: Any, record: DataRecord) -> Any:
        self._attempt.replayed = True
        return response

    def _ensure(self) -> tuple[Callable[..., Response], IdempotencyConfig]:
        if self._run is None or self._config is None:
            # One persistence layer per config: a shared one would keep the first config's key expression.
            self._config = IdempotencyConfig(
                expires_after_seconds=self.ttl_seconds,
                use_local_cache=True,
                local_cache_max_items=512,
                response_hook=cast("IdempotentHookFunction", self._mark_replay),
            )
            store = DynamoDBPersistenceLayer(
                table_name=self.table_name, boto_config=AWS_CLIENT_CONFIG, boto3_session=session()
            )
            self._run = idempotent_function(
                data_keyword_argument="request", persistence_store=store, config=self._config
            )(_run_work)
        return self._run, self._config

    def run(
        self, key: str, work: Callable[[], Response], context: LambdaContext | None
    ) -> tuple[Response, bool]:
        """Return (answer, replayed). Raises whatever `work` raises, and
        `IdempotencyAlreadyInProgressError` when a twin of this request is being delivered now."""
        run, config = self._ensure()
        if context is not None:
            # In-progress records then expire with this invocation, so a killed run blocks no retry.
            config.register_lambda_context(context)
        attempt = self._attempt = _Attempt()

        def tracked() -> Response:
            try:
                attempt.result = work()
            except BaseException as exc:
                attempt.error = exc
                raise
            return attempt.result

        try:
            response = run(request={"events": key}, work=tracked)
        except IdempotencyPersistenceLayerError as exc:
            count("IdempotencyStoreErrors")
            if attempt.result is not None:
                logger.warning(
                    "delivered, but the idempotency record was not saved", extra={"error": str(exc)}
                )
                return attempt.result, False
            if attempt.error is not None:
                raise attempt.error from exc
            # The store is down before delivery: deliver anyway. SMC loads are upserts keyed on
            # MESSAGE_ID and membership changes are idempotent, so a later redelivery adds nothing.
            logger.warning("idempotency store unavailable; delivering without it", extra={"error": str(exc)})
            return work(), False
        return response, attempt.replayed
