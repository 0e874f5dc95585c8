"""Switchable faults that make the sandbox behave like a failing, slow or flaky SMC."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# result_code / error_code pairs a real SMC plausibly answers with for a given status.
_STATUS_BODIES: dict[int, tuple[str, str, str]] = {
    400: ("ValidationFailed", "ERR_VALIDATION", "Incorrect data provided."),
    401: ("Failed", "ERR_AUTHENTICATION", "Invalid API key or secret."),
    403: ("Failed", "ERR_AUTHORIZATION", "Access denied."),
    404: ("NotFound", "ERR_NOT_FOUND", "Resource not found."),
    429: ("Failed", "ERR_TOO_MANY_REQUESTS", "Too many requests, slow down."),
    503: ("ServiceUnavailable", "ERR_SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
}

# The counters of a load/delete answer (`number_of_<name>`), as the Swagger's models give them.
_COUNTERS = (
    "inserted_records",
    "updated_records",
    "failed_records",
    "duplicate_records",
    "records_not_found",
    "deleted_records",
)

# The shape a `result_code` fault answers in: a load/delete, a transactional send, a creation.
AnswerKind = Literal["data", "send", "created"]


def answer_kind(path: str) -> AnswerKind:
    """Which answer shape a `result_code` fault takes for a request to `path`."""
    lowered = path.lower().rstrip("/")
    if lowered.endswith("/send"):
        return "send"
    return "created" if lowered.endswith("/segments/static") else "data"


def _injected() -> list[dict[str, str]]:
    return [{"error_code": "ERR_FAULT", "description": "injected"}]


@dataclass
class Fault:
    """One fault rule; it affects the next `times` matching SMC requests (-1 = until cleared).

    `status` answers that status instead of the real response; `delay_s` sleeps first;
    `result_code` answers (status 200 unless set) an SMC load/delete body with that result code,
    counters of zero and `invalid_records` naming `invalid_rows` (a send: every item with that
    result code, `Failed` for the items in `invalid_rows`, no message ids; a segment creation:
    that result code and a message), without applying anything — an SMC whose 200 is no proof;
    `drop_connection` closes the socket without a (complete) response — with `send_headers`
    the status line and headers go out first, so the drop happens mid-response;
    `after_processing` applies the request to the state before the fault strikes.
    """

    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    drop_connection: bool = False
    after_processing: bool = False
    times: int = 1
    method: str | None = None
    path_contains: str | None = None
    body: dict[str, Any] | None = None
    send_headers: bool = False
    result_code: str | None = None
    invalid_rows: list[int] | None = None
    # With `result_code`: counters (`inserted_records`, `records_not_found`, … without the
    # `number_of_` prefix) that replace the zeros of a load/delete answer, even impossible ones.
    counters: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.result_code is not None and self.status is None:
            self.status = 200
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        if self.delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if self.times == 0 or self.times < -1:
            raise ValueError("times must be a positive count or -1 (until cleared)")
        unknown = sorted(set(self.counters or {}) - set(_COUNTERS))
        if unknown:
            raise ValueError(f"unknown counters: {', '.join(unknown)}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from an admin API body; unknown keys are an error, not silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    def response_body(self, kind: AnswerKind = "data", request: Any = None, rows: int | None = None) -> Any:
        """The JSON body answered with `status`: the configured one, an answer of `kind` with
        `result_code` for the `request` body of `rows` rows or items, else an SMC-like error."""
        if self.body is not None:
            return self.body
        if self.result_code is not None:
            if kind == "send":
                return self._send_answer(request)
            if kind == "created":
                return {"result_code": self.result_code, "message": "Injected.", "errors": self._errors()}
            return self._data_answer(rows or 0)
        status = self.status or 500
        default = ("InternalServerError", "ERR_INTERNAL", "An unexpected error occurred.")
        result_code, error_code, description = _STATUS_BODIES.get(status, default)
        errors = [{"error_code": error_code, "description": description}]
        return {"result_code": result_code, "errors": errors}

    def _data_answer(self, rows: int) -> dict[str, Any]:
        named = sorted({row for row in self.invalid_rows or [] if 0 <= row < rows})
        record = {"field_name": None, "message": "Invalid record", "validation_code": "Unknown"}
        invalid = [{"record_index": row, **record} for row in named]
        succeeded = self.result_code == "Succeeded"
        answer: dict[str, Any] = {
            "result_code": self.result_code,
            "number_of_inserted_records": 0,
            "number_of_updated_records": 0,
            "number_of_failed_records": 0 if succeeded else rows,
            "number_of_duplicate_records": 0,
            "number_of_records_not_found": 0,
            "number_of_deleted_records": 0,
            "invalid_records": invalid,
            "errors": self._errors(),
        }
        answer.update({f"number_of_{name}": value for name, value in (self.counters or {}).items()})
        return answer

    def _send_answer(self, request: Any) -> dict[str, Any]:
        items = request.get("items") if isinstance(request, dict) else None
        answers = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            echo = item if isinstance(item, dict) else {}
            failed = index in (self.invalid_rows or [])
            answers.append(
                {
                    "data": echo.get("data"),
                    "recipient": echo.get("recipient"),
                    "language": echo.get("language"),
                    "result_code": "Failed" if failed else self.result_code,
                    "errors": _injected() if failed else [],
                }
            )
        return {
            "result_code": self.result_code,
            "errors": self._errors(),
            "response_data": answers,
            "messages": [],
        }

    def _errors(self) -> list[dict[str, str]] | None:
        return None if self.result_code == "Succeeded" else _injected()

    def response_headers(self) -> list[tuple[str, str]]:
        return [("Retry-After", self.retry_after)] if self.retry_after is not None else []


class FaultBook:
    """The active faults plus the global latency; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.latency_s = 0.0

    def add(self, fault: Fault) -> None:
        # Keep a copy: `times` counts down here and must not change the caller's object.
        with self._lock:
            self._faults.append(dataclasses.replace(fault))

    def take(self, method: str, path: str) -> Fault | None:
        """Return the first fault matching this request and use up one of its `times`."""
        with self._lock:
            for position, fault in enumerate(self._faults):
                if not fault.matches(method, path):
                    continue
                taken = dataclasses.replace(fault)
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        del self._faults[position]
                return taken
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return [dataclasses.replace(fault) for fault in self._faults]
