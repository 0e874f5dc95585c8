"""Request-level idempotency (Powertools, DynamoDB): a redelivered request is answered from memory.

The key is a hash of the request's sorted event ids, not of the API Gateway event (whose
requestContext changes per delivery) nor of the body text (whose spacing may change). One
DynamoDB write opens the record and one closes it, whatever the batch size; rows are also keyed
on MESSAGE_ID in SMC, so a batch that Segment re-forms with other events still never duplicates.

Two additions to Powertools' DynamoDB layer (its `_put_record` / `_delete_record` hooks):
- A request answered retryable keeps, instead of having its record deleted, an in-progress record
  that has already expired — exactly what Powertools' next put may take over at once — carrying
  the request's progress (`handler.progress`). No extra write: it replaces the delete.
- The put that opens a record asks DynamoDB for the item it replaces (`ReturnValues=ALL_OLD`),
  so the redelivery learns that progress in the same round trip. No extra read.

The whole exchange runs on a helper thread and the caller waits only until the answer deadline:
when DynamoDB hangs on the final write, the answer goes out anyway (the in-progress record then
expires with the invocation, and Segment's retry is answered from SMC's upserts).
"""

from __future__ import annotations

import hashlib
import threading
import time
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
from handler.deadline import Deadline
from handler.errors import DependencyUnavailableError
from handler.observability import count, in_thread_with_trace, logger
from handler.progress import Progress

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction

Response = dict[str, Any]
Work = Callable[[Progress | None], Response]
PROGRESS_ATTR = "progress"


class RetryLater(Exception):
    """Raised by the work for a retryable answer: it is never remembered as the request's answer;
    `progress` (what SMC took already) is kept for the redelivery instead."""

    def __init__(self, response: Response, progress: Progress | None = None) -> None:
        super().__init__("retryable answer")
        self.response = response
        self.progress = progress


def request_key(message_ids: Iterable[str]) -> str:
    """A canonical hash of the events' ids: the same events in any order give the same key, and
    different id lists never share one."""
    digest = hashlib.sha256()
    for message_id in sorted(message_ids):
        digest.update(_escaped(message_id.encode("utf-8", "surrogatepass")) + b"\x00")
    return digest.hexdigest()


def _escaped(encoded: bytes) -> bytes:
    """`encoded` without NUL bytes, so NUL can end each id unambiguously: an id may itself hold
    NUL (`"a\\u0000b"` must not hash like the two ids `"a"`, `"b"`). 0x01 escapes itself and NUL;
    an id with neither byte is unchanged, so keys (and records stored under them) stay the same."""
    if b"\x00" not in encoded and b"\x01" not in encoded:
        return encoded
    return encoded.replace(b"\x01", b"\x01\x01").replace(b"\x00", b"\x01\x02")


class _ProgressLayer(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB layer that keeps a retried request's progress (module docstring)."""

    def __init__(self, table_name: str, ttl_seconds: int) -> None:
        super().__init__(table_name=table_name, boto_config=AWS_CLIENT_CONFIG, boto3_session=session())
        self._ttl_seconds = ttl_seconds
        # Per thread: each request's whole exchange runs on a thread of its own (`run`), so
        # requests handled side by side (the local stack, tests) never see each other's progress.
        self._local = threading.local()
        events = self.client.meta.events
        events.register("provide-client-params.dynamodb.PutItem", self._ask_for_old_item)
        events.register("after-call.dynamodb.PutItem", self._read_old_item)

    @staticmethod
    def _ask_for_old_item(params: dict[str, Any], **kwargs: Any) -> None:
        params.setdefault("ReturnValues", "ALL_OLD")

    @property
    def found(self) -> bytes | None:
        """The progress the opening put of this thread's request replaced."""
        return getattr(self._local, "found", None)

    def keep(self, progress: bytes) -> None:
        """Keep `progress` instead of deleting this thread's record when its request fails."""
        self._local.keep = progress

    def _read_old_item(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        blob = ((parsed.get("Attributes") or {}).get(PROGRESS_ATTR) or {}).get("B")
        self._local.found = blob if isinstance(blob, bytes) else None

    def _put_record(self, data_record: DataRecord) -> None:
        self._local.found = None
        super()._put_record(data_record)

    def _delete_record(self, data_record: DataRecord) -> None:
        keep, self._local.keep = getattr(self._local, "keep", None), None
        if keep is None:
            super()._delete_record(data_record)
            return
        # An in-progress record whose lock has already expired: Powertools' next put takes it over.
        self.client.update_item(
            TableName=self.table_name,
            Key=self._get_key(data_record.idempotency_key),
            UpdateExpression="SET #status = :inprogress, #lock = :expired, #expiry = :expiry, #progress = :p",
            ExpressionAttributeNames={
                "#status": self.status_attr,
                "#lock": self.in_progress_expiry_attr,
                "#expiry": self.expiry_attr,
                "#progress": PROGRESS_ATTR,
            },
            ExpressionAttributeValues={
                ":inprogress": {"S": "INPROGRESS"},
                ":expired": {"N": "0"},
                ":expiry": {"N": str(int(time.time()) + self._ttl_seconds)},
                ":p": {"B": keep},
            },
        )
        count("ProgressKept")


@dataclass(slots=True)
class _Attempt:
    replayed: bool = False
    result: Response | None = None
    error: BaseException | None = None
    moving: threading.Event = field(
        default_factory=threading.Event
    )  # the work started, or the exchange ended
    _state: str = "waiting"  # then "started" (by the exchange) or "abandoned" (by the caller)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def started(self) -> bool:
        """Whether the work has started."""
        return self._state == "started"

    def start(self) -> bool:
        """The exchange may run the work: True once, unless the caller abandoned it first."""
        with self._lock:
            if self._state == "waiting":
                self._state = "started"
                self.moving.set()
                return True
            return False

    def abandon(self) -> bool:
        """The caller stops waiting: True if the work had not started, so it never will."""
        with self._lock:
            if self._state == "waiting":
                self._state = "abandoned"
                return True
            return False


class _Abandoned(Exception):
    """The caller stopped waiting for the record and ran the work without it."""


def _run_work(request: dict[str, str], work: Callable[[], Response]) -> Response:
    # The decorated function: `request` is only the key; `work` does the delivery.
    return work()


@dataclass(slots=True)
class IdempotencyGuard:
    """Runs delivery at most once per request key; remembers only final answers.

    Raise `RetryLater` from the work for a retryable outcome: the record is then released (with
    the progress) so Segment's retry really retries (a returned 503 would be replayed to every retry).
    """

    table_name: str
    ttl_seconds: int
    _attempts: threading.local = field(default_factory=threading.local)  # per exchange thread
    _run: Callable[..., Response] | None = None
    _config: IdempotencyConfig | None = None
    _layer: _ProgressLayer | None = None

    def _mark_replay(self, response: Any, record: DataRecord) -> Any:
        self._attempts.current.replayed = True
        return response

    def _ensure(self) -> tuple[Callable[..., Response], IdempotencyConfig, _ProgressLayer]:
        if self._run is None or self._config is None or self._layer is None:
            # One persistence layer per config: a shared one would keep the first config's key expression.
            self._config = IdempotencyConfig(
                expires_after_seconds=self.ttl_seconds,
                use_local_cache=True,
                local_cache_max_items=512,
                response_hook=cast("IdempotentHookFunction", self._mark_replay),
            )
            self._layer = _ProgressLayer(self.table_name, self.ttl_seconds)
            self._run = idempotent_function(
                data_keyword_argument="request", persistence_store=self._layer, config=self._config
            )(_run_work)
        return self._run, self._config, self._layer

    def run(
        self, key: str, work: Work, context: LambdaContext | None, open_by: Deadline, answer_by: Deadline
    ) -> tuple[Response, bool]:
        """Return (answer, replayed) by `answer_by`. Raises what `work` raises, and
        `IdempotencyAlreadyInProgressError` when a twin of this request is being delivered now.

        A record that is not open by `open_by` (DynamoDB slow or hanging) is given up: the work
        runs without it, as when the store fails outright."""
        run, config, layer = self._ensure()
        if context is not None:
            # In-progress records then expire with this invocation, so a killed run blocks no retry.
            config.register_lambda_context(context)
        attempt = _Attempt()

        def tracked() -> Response:
            if not attempt.start():
                raise _Abandoned
            earlier = Progress.decode(layer.found) if layer.found else None
            try:
                attempt.result = work(earlier)
            except RetryLater as exc:
                if exc.progress:
                    layer.keep(exc.progress.encode())
                attempt.error = exc
                raise
            except BaseException as exc:
                attempt.error = exc
                raise
            return attempt.result

        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def exchange() -> None:
            self._attempts.current = attempt
            try:
                outcome["response"] = run(request={"events": key}, work=tracked)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc
            finally:
                finished.set()
                attempt.moving.set()

        threading.Thread(target=in_thread_with_trace(exchange), name="idempotency", daemon=True).start()
        if not attempt.moving.wait(open_by.remaining()) and attempt.abandon():
            count("IdempotencyStoreSlow")
            logger.warning("idempotency store too slow; delivering without it")
            return work(None), False
        if not finished.wait(answer_by.remaining()):
            return self._late(attempt)
        error = outcome.get("error")
        if error is None:
            return outcome["response"], attempt.replayed
        if isinstance(error, IdempotencyPersistenceLayerError):
            return self._without_store(attempt, error, work)
        raise error

    @staticmethod
    def _late(attempt: _Attempt) -> tuple[Response, bool]:
        """The answer deadline came first: answer with what is known, never wait longer."""
        attempt.abandon()
        count("IdempotencyStoreLate")
        if attempt.result is not None:
            logger.warning("answered before the idempotency record was saved")
            return attempt.result, False
        if attempt.error is not None:
            raise attempt.error
        raise DependencyUnavailableError("delivery did not finish before Segment's deadline")

    @staticmethod
    def _without_store(
        attempt: _Attempt, error: IdempotencyPersistenceLayerError, work: Work
    ) -> tuple[Response, bool]:
        count("IdempotencyStoreErrors")
        if attempt.result is not None:
            logger.warning("delivered, but the idempotency record was not saved", extra={"error": str(error)})
            return attempt.result, False
        if attempt.error is not None:
            raise attempt.error from error
        # The store is down before delivery: deliver anyway. SMC loads are upserts keyed on
        # MESSAGE_ID and membership changes are idempotent, so a later redelivery adds nothing.
        logger.warning("idempotency store unavailable; delivering without it", extra={"error": str(error)})
        return work(None), False
