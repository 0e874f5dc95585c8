"""SMC REST client: one pooled session, bounded retries, and errors classified by what comes next."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from handler import PRODUCT, __version__
from handler.credentials import Credentials
from handler.deadline import Deadline
from handler.errors import (
    SmcAuthError,
    SmcError,
    SmcPermanentError,
    SmcRetryableError,
    SmcTargetNotFoundError,
)
from handler.observability import count, logger, timing
from handler.operations import Target
from handler.smc.retry import MAX_ATTEMPTS, backoff, parse_retry_after

CONNECT_TIMEOUT_S = 2.0
MIN_ATTEMPT_S = 0.05  # below this, another attempt cannot finish: give the time back to Segment
USER_AGENT = f"{PRODUCT}/{__version__} python-requests/{requests.__version__}"


class CredentialSource(Protocol):
    """Where the client gets the service account, and re-reads it after a 401."""

    def get(self) -> Credentials: ...

    def refresh(self) -> Credentials: ...


@dataclass(slots=True)
class SmcResult:
    """A load/delete answer: which rows (0-based, as sent) SMC refused, and why."""

    status: int
    result_code: str
    row_errors: dict[int, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


def new_session() -> requests.Session:
    """A pooled session; retries are ours (urllib3's skip POST and ignore our deadline)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return session


def _segment(value: str) -> str:
    # Names are validated as api names already; quoting is the second lock on the path.
    return quote(value, safe="")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_codes(data: Mapping[str, Any]) -> str:
    errors = data.get("errors") or []
    codes = [str(e.get("error_code")) for e in errors if isinstance(e, dict) and e.get("error_code")]
    return ",".join(codes[:5]) or str(data.get("result_code") or "no detail")


def _row_errors(data: Mapping[str, Any], rows: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for record in data.get("invalid_records") or []:
        if not isinstance(record, dict):
            continue
        index = record.get("record_index")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < rows:
            code = str(record.get("validation_code") or "Invalid")[:40]
            field_name = str(record.get("field_name") or "")[:64]
            found.setdefault(index, f"SMC {code}" + (f" on {field_name}" if field_name else ""))
    return found


class SmcClient:
    """Talks to one SMC organization; safe to share across threads and invocations."""

    def __init__(
        self,
        base_url: str,
        organization: str,
        credentials: CredentialSource,
        session: requests.Session | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._org_path = f"/organizations/{_segment(organization)}"
        self._credentials = credentials
        self._session = session or new_session()

    def url(self, path: str, *, organization_scoped: bool = True) -> str:
        """The full URL `call` uses for `path` (operator tools show it in dry runs)."""
        return self._base + (self._org_path if organization_scoped else "") + path

    def target_path(self, target: Target) -> str:
        """The API path (below the organization) a target's rows go to."""
        path = f"/lists/{_segment(target.list_name)}"
        if target.segment is not None:
            path += f"/segments/{_segment(target.segment)}"
        return path + ("/data/load" if target.action == "load" else "/data")

    def send_rows(self, target: Target, body: bytes, rows: int, deadline: Deadline) -> SmcResult:
        """Load or delete `rows` rows (a JSON array body); map SMC's answer to per-row results.

        Raises an `SmcError` subclass when the call as a whole did not succeed.
        """
        params = {"keyFields": ",".join(target.key_fields), "fields": ",".join(target.fields), "mode": "Sync"}
        method = "POST" if target.action == "load" else "DELETE"
        response = self.call(method, self.target_path(target), deadline, params=params, body=body)
        data = _json(response)
        status = response.status_code
        if status == 404 and target.not_found_is_done:
            return SmcResult(status, "NotFound")
        if status == 404:
            count("SmcTargetNotFound")
            raise SmcTargetNotFoundError(f"SMC has no {target.describe()} (404)", status=status)
        row_errors = _row_errors(data, rows)
        result_code = str(data.get("result_code") or "")
        if status in (200, 201, 202) and data:
            if result_code == "Failed" and not row_errors:
                raise SmcPermanentError(f"SMC failed the request: {_error_codes(data)}", status=status)
            counters = {k: v for k, v in data.items() if k.startswith("number_of_") and isinstance(v, int)}
            return SmcResult(status, result_code, row_errors, counters)
        if status == 400 and row_errors:
            return SmcResult(status, result_code or "ValidationFailed", row_errors)
        if status in (200, 201, 202):
            raise SmcRetryableError(f"SMC answered {status} without a readable body", status=status)
        raise SmcPermanentError(f"SMC refused the request ({status}: {_error_codes(data)})", status=status)

    def call(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        organization_scoped: bool = True,
    ) -> requests.Response:
        """One logical SMC call (below `/organizations/{org}` unless `organization_scoped` is false),
        retried on connection errors, 429 and 5xx until `deadline`.

        Returns the response for any other status; raises `SmcAuthError` after a 401/403 that
        survives one secret refresh, `SmcRetryableError` when time or attempts run out.
        """
        url = self.url(path, organization_scoped=organization_scoped)
        credentials = self._credentials.get()
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline.remaining()
            if remaining < MIN_ATTEMPT_S:
                raise SmcRetryableError("no time left for SMC before Segment's deadline")
            started = time.monotonic()
            failure: SmcError
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    data=body,
                    headers={"X-ApiKey": credentials.smc_api_key_header, "Content-Type": "application/json"},
                    timeout=(min(CONNECT_TIMEOUT_S, remaining), remaining),
                    allow_redirects=False,  # a redirect could carry the API key to another host
                )
            except requests.RequestException as exc:
                # Includes a pooled connection the far end closed while idle: the retry opens a new one.
                count("SmcConnectionErrors")
                logger.warning("SMC call failed", extra={"error": type(exc).__name__, "attempt": attempt})
                failure = SmcRetryableError(f"SMC unreachable ({type(exc).__name__})")
                delay = backoff(attempt)
            else:
                elapsed_ms = (time.monotonic() - started) * 1000
                status = response.status_code
                count("SmcRequests")
                count(f"SmcResponses{status // 100}xx" if status != 429 else "SmcResponses429")
                timing("SmcLatency", elapsed_ms)
                logger.debug("SMC answered", extra={"status": status, "ms": round(elapsed_ms, 1)})
                if status in (401, 403):
                    if not refreshed:
                        refreshed = True
                        credentials = self._credentials.refresh()
                        continue
                    count("SmcAuthFailures")
                    raise SmcAuthError(f"SMC refused the service account ({status})", status=status)
                if status != 429 and status < 500 and not 300 <= status < 400:
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failure = SmcRetryableError(f"SMC answered {status}", status=status, retry_after=retry_after)
                delay = retry_after if retry_after is not None else backoff(attempt)
            if attempt >= MAX_ATTEMPTS or delay > deadline.remaining() - MIN_ATTEMPT_S:
                count("SmcRetryableFailures")
                raise failure
            time.sleep(delay)
