"""SMC REST client: one pooled session, bounded retries, and errors classified by what comes next."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import SSLError as HandshakeError

from handler import PRODUCT, __version__
from handler.credentials import Credentials
from handler.deadline import Deadline
from handler.errors import (
    SmcAuthError,
    SmcError,
    SmcRefusedError,
    SmcRetryableError,
    SmcSendUnconfirmedError,
    SmcTargetNotFoundError,
)
from handler.observability import count, logger, timing
from handler.operations import Target
from handler.smc.answers import TRANSIENT_RESULT_CODES, RowVerdicts, error_codes, not_found, read_answer
from handler.smc.retry import MAX_ATTEMPTS, backoff, parse_retry_after
from handler.smc.sends import SendVerdicts, read_send_answer

CONNECT_TIMEOUT_S = 2.0
MIN_ATTEMPT_S = 0.05  # below this, another attempt cannot finish: give the time back to Segment
USER_AGENT = f"{PRODUCT}/{__version__} python-requests/{requests.__version__}"
# Statuses after which the same call may well succeed a moment later (5xx and 3xx are added).
TRANSIENT_STATUSES = frozenset({408, 409, 423, 425, 429})
# The statuses read as "SMC did not act on it": a call that must not be repeated once it may have
# acted (a transactional send) is retried after these alone. An assumption, not documented by
# SMC: throttling (429) and an unavailable service (503) refuse a request before it is processed,
# as HTTP defines them. Reading them as "may have been sent" instead would drop every message
# SMC throttles or an outage turns away, for good; other 5xx are read so.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
_LATENCY_WEIGHT = 0.2  # of the newest sample in the running latency estimate


class CredentialSource(Protocol):
    """Where the client gets the service account, and re-reads it after a 401."""

    def get(self, deadline: Deadline | None = None) -> Credentials: ...

    def refresh(self, deadline: Deadline | None = None) -> Credentials: ...


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


def never_sent(exc: requests.RequestException) -> bool:
    """Whether a failed request surely never reached SMC (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(inner, NewConnectionError | ConnectTimeoutError | HandshakeError)


def json_object(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when the body is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _transient_answer(response: requests.Response) -> str | None:
    """Why a 2xx answer to a data call is no answer at all (SMC may succeed if asked again)."""
    data = json_object(response)
    if not data:
        return "without a readable body"
    code = data.get("result_code")
    return f"with result code {code}" if code in TRANSIENT_RESULT_CODES else None


class SmcClient:
    """Talks to one SMC organization; safe to share across threads and invocations."""

    def __init__(
        self,
        base_url: str,
        organization: str,
        credentials: CredentialSource,
        session: requests.Session | None = None,
        *,
        wait_on_throttle: bool = True,
    ) -> None:
        self._base = base_url.rstrip("/")
        # False (queued mode): a 429 is raised at once instead of waited out in the function; the
        # queue holds the events back for the Retry-After, and no billed time is spent sleeping.
        self._wait_on_throttle = wait_on_throttle
        self._org_path = f"/organizations/{_segment(organization)}"
        self._credentials = credentials
        self._session = session or new_session()
        # Calls that must not be repeated go on a fresh connection each (`Connection: close`): a
        # pooled one the far end closed while idle fails in a way that cannot tell whether the
        # request left.
        self._once_session = new_session()
        self._once_session.headers["Connection"] = "close"
        self._created: set[tuple[str, str]] = set()  # audience segments this process created
        # Running estimate of one SMC round trip: a call starts only if the deadline leaves this much.
        self.typical_latency_s = 0.1

    def url(self, path: str, *, organization_scoped: bool = True) -> str:
        """The full URL `call` uses for `path` (operator tools show it in dry runs)."""
        return self._base + (self._org_path if organization_scoped else "") + path

    def target_path(self, target: Target) -> str:
        """The API path (below the organization) a target's rows go to."""
        path = f"/lists/{_segment(target.list_name)}"
        if target.segment is not None:
            path += f"/segments/{_segment(target.segment)}"
        return path + ("/data/load" if target.action == "load" else "/data")

    def send_rows(self, target: Target, body: bytes, rows: int, deadline: Deadline) -> RowVerdicts:
        """Load or delete `rows` rows (a JSON array body) and read SMC's verdict on each.

        Raises an `SmcError` subclass when the call as a whole did not succeed.
        """
        params = {"keyFields": ",".join(target.key_fields), "fields": ",".join(target.fields), "mode": "Sync"}
        if target.import_option is not None:
            params["data_import_option"] = target.import_option
        method = "POST" if target.action == "load" else "DELETE"

        def attempt() -> RowVerdicts:
            path = self.target_path(target)
            response = self.call(method, path, deadline, params=params, body=body, data_call=True)
            return read_answer(target, rows, response.status_code, json_object(response))

        segment = (target.list_name.lower(), str(target.segment).lower())
        try:
            return attempt()
        except SmcTargetNotFoundError as exc:
            if not target.create_segment or exc.missing != target.describe():
                raise
            if segment in self._created:
                # Created earlier, missing now (deleted in SMC, or a creation that did not hold):
                # forgotten, so the next attempt creates it again instead of failing until a cold start.
                self._created.discard(segment)
                raise
        # An audience SMC does not have yet: created once per process, then loaded into.
        self.create_static_segment(target, deadline)
        self._created.add(segment)
        return attempt()

    def send_transactional(self, journey: str, body: bytes, items: int, deadline: Deadline) -> SendVerdicts:
        """Send `items` messages (the JSON `{"items": [...]}` body) of one transactional journey.

        Never repeated once SMC may have acted on it: raises `SmcSendUnconfirmedError` when the
        answer is lost, `SmcTargetNotFoundError` for an unknown journey, and another `SmcError`
        when nothing was sent and a retry may send it (429 and 503: `NOT_PROCESSED_STATUSES`).
        Another 5xx proves nothing either way (a gateway may answer one after SMC sent): its
        messages are read as unknown, not sent again."""
        path = f"/journeys/transactional/{_segment(journey)}/send"
        response = self.call("POST", path, deadline, body=body, once=True)
        if response.status_code == 404:
            raise not_found(Target("send", journey, (), ()), 404)
        return read_send_answer(items, response.status_code, json_object(response))

    def create_static_segment(self, target: Target, deadline: Deadline) -> None:
        """Create the static segment `target` loads into (an audience SMC does not have yet).

        A segment that exists already (another instance created it first) is fine."""
        body = json.dumps({"api_name": target.segment, "name": target.segment}).encode()
        path = f"/lists/{_segment(target.list_name)}/segments/static"
        response = self.call("POST", path, deadline, body=body)
        data = json_object(response)
        code = data.get("result_code")
        # The Swagger's create_segment_success_response carries a result_code that may itself say
        # Failed: only `Succeeded` proves the segment was made.
        if response.status_code in (200, 201) and code == "Succeeded":
            count("SmcSegmentsCreated")
            return
        if response.status_code == 404:
            raise not_found(Target("load", target.list_name, (), ()), 404)
        if "exist" in json.dumps(data.get("errors") or data.get("message") or "").lower():
            return  # another instance created it first: it is there to load into
        status = response.status_code
        message = f"SMC did not create {target.describe()} ({status}: {error_codes(data)})"
        if code in TRANSIENT_RESULT_CODES:
            raise SmcRetryableError(message, status=status)
        raise SmcRefusedError(message, status=status)

    def call(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        organization_scoped: bool = True,
        data_call: bool = False,
        transient: frozenset[int] = TRANSIENT_STATUSES,
        once: bool = False,
    ) -> requests.Response:
        """One logical SMC call (below `/organizations/{org}` unless `organization_scoped` is false),
        retried on connection errors, `transient` statuses, 3xx and 5xx until `deadline` — and, for a
        `data_call`, on a 2xx whose body is unreadable or carries a transient result code.

        `once`: the call must not be repeated once SMC may have acted on it (a transactional send):
        it is retried only when it surely never arrived, after a 401/403 (SMC acts on no
        unauthenticated call) or after 429/503 (`NOT_PROCESSED_STATUSES`); every other status is
        returned, other 5xx included, since they do not say whether SMC acted; a failure after
        the request may have left raises
        `SmcSendUnconfirmedError`.

        Returns the response for any other status; raises `SmcAuthError` after a 401/403 that
        survives one secret refresh, `SmcRetryableError` when time or attempts run out.
        """
        url = self.url(path, organization_scoped=organization_scoped)
        credentials = self._credentials.get(deadline)
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
                response = (self._once_session if once else self._session).request(
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
                if once and not never_sent(exc):
                    raise SmcSendUnconfirmedError(f"SMC's answer was lost ({type(exc).__name__})") from None
                failure = SmcRetryableError(f"SMC unreachable ({type(exc).__name__})")
                delay = backoff(attempt)
            else:
                elapsed = time.monotonic() - started
                status = response.status_code
                self._observe(status, elapsed)
                if status in (401, 403):
                    if not refreshed:
                        refreshed = True
                        credentials = self._credentials.refresh(deadline)
                        continue
                    count("SmcAuthFailures")
                    raise SmcAuthError(f"SMC refused the service account ({status})", status=status)
                why = None
                if once:
                    why = str(status) if status in NOT_PROCESSED_STATUSES else None
                elif status in transient or status >= 500 or 300 <= status < 400:
                    why = str(status)
                elif data_call and 200 <= status < 300:
                    answer = _transient_answer(response)
                    why = f"{status} {answer}" if answer else None
                if why is None:
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failure = SmcRetryableError(f"SMC answered {why}", status=status, retry_after=retry_after)
                delay = retry_after if retry_after is not None else backoff(attempt)
            throttled = failure.status == 429 and not self._wait_on_throttle
            if throttled or attempt >= MAX_ATTEMPTS or delay > deadline.remaining() - MIN_ATTEMPT_S:
                count("SmcRetryableFailures")
                raise failure
            time.sleep(delay)

    def _observe(self, status: int, elapsed: float) -> None:
        count("SmcRequests")
        count(f"SmcResponses{status // 100}xx" if status != 429 else "SmcResponses429")
        timing("SmcLatency", elapsed * 1000)
        logger.debug("SMC answered", extra={"status": status, "ms": round(elapsed * 1000, 1)})
        # A float assignment is atomic: parallel calls may race on it, never corrupt it.
        self.typical_latency_s += _LATENCY_WEIGHT * (elapsed - self.typical_latency_s)
