"""The sandbox HTTP server (SMC's v1 API under /Portal/Api, admin API under /_sandbox/) and `SmcSandbox`."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from .faults import Fault, FaultBook, answer_kind
from .model import JsonDict, validation_failed
from .routes import ADMIN_PREFIX, API_PREFIX, BAD_JSON, handle_admin, handle_smc
from .state import RecordedRequest, SandboxState


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default (5) drops SYNs under concurrent benchmark clients
    # Idle keep-alive connections would make server_close() wait; stop() closes them itself.
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: SmcSandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (time-outs in fault tests) are expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "SmcSandbox/1.0"
    disable_nagle_algorithm = True  # headers and body go out in two writes; don't let Nagle delay them
    timeout = 120  # idle keep-alive connections end eventually

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if cast(_Server, self.server).sandbox.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        sandbox = cast(_Server, self.server).sandbox
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True  # the stream position is unknown now
            self._send(400, validation_failed("Unreadable request body").body())
            return
        body = _parse_json(raw)
        lowered = url.path.lower()
        if lowered == ADMIN_PREFIX or lowered.startswith(ADMIN_PREFIX + "/"):
            self._send(*handle_admin(sandbox, self.command, url.path, body))
        elif lowered == API_PREFIX or lowered.startswith(API_PREFIX + "/"):
            self._serve_smc(sandbox, url.path, query, body)
        else:
            self._send(
                404,
                {
                    "result_code": "NotFound",
                    "errors": [{"error_code": "ERR_NOT_FOUND", "description": "No such endpoint"}],
                },
            )

    def _serve_smc(self, sandbox: SmcSandbox, path: str, query: dict[str, str], body: Any) -> None:
        generation = sandbox.state.generation
        fault = sandbox.faults.take(self.command, path)
        if sandbox.faults.latency_s > 0:
            time.sleep(sandbox.faults.latency_s)
        reply: tuple[int, Any] | None = None
        if fault is not None and fault.after_processing:
            reply = self._smc_reply(sandbox, path, query, body)  # state changes; the answer may be lost
        if fault is not None and fault.delay_s > 0:
            time.sleep(fault.delay_s)
        if sandbox.state.generation != generation:
            # The sandbox was reset while this request waited (a test that gave up on a slow
            # answer): it belongs to a world that no longer exists.
            self.close_connection = True
            return
        headers: list[tuple[str, str]] = []
        status: int | None
        if fault is not None and fault.drop_connection:
            status = None
        elif fault is not None and fault.status is not None:
            payload = fault.response_body(answer_kind(path), body, _row_count(body, query))
            status, headers = fault.status, fault.response_headers()
        else:
            status, payload = reply or self._smc_reply(sandbox, path, query, body)
        # Record before answering, so a client that reads the log right after its response sees it.
        sandbox.state.record(
            RecordedRequest(self.command, path, query, _row_count(body, query), status, fault is not None),
            generation,
        )
        if fault is not None and status is None:
            self._drop(fault)
        else:
            self._send(cast(int, status), payload, headers)

    def _smc_reply(self, sandbox: SmcSandbox, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        credentials = _credentials(self.headers.get("X-ApiKey"), self.headers.get("X-ApiKey-Secret"))
        return handle_smc(sandbox.state, self.command, path, query, credentials, body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self, fault: Fault) -> None:
        """Close the connection without a response, or mid-response after the headers."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            if fault.send_headers:
                status = fault.status or 200
                self.wfile.write(
                    b"HTTP/1.1 %d Sandbox\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 4096\r\n\r\n{"result_code":' % status
                )
            self.connection.shutdown(socket.SHUT_RDWR)


def _parse_json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        return BAD_JSON


def _row_count(body: Any, query: Mapping[str, str]) -> int | None:
    """Data rows of a load or delete (a header row is not counted), items of a transactional send."""
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return len(body["items"])
    if not isinstance(body, list):
        return None
    header_in_body = not any(key.lower() == "fields" and value for key, value in query.items())
    return max(len(body) - 1, 0) if header_in_body else len(body)


def _credentials(api_key: str | None, secret: str | None) -> tuple[str, str] | None:
    """(key, secret) from `X-ApiKey: key:secret`, or from `X-ApiKey` plus `X-ApiKey-Secret`."""
    if not api_key:
        return None
    if secret is not None:
        return api_key, secret
    key, sep, secret = api_key.partition(":")
    return (key, secret) if sep else None


class SmcSandbox:
    """A local SMC: a real HTTP server following SMC's v1 contract, plus seeding and inspection.

    `base_url` is what a user puts in SMC_ADMIN_URL (the client appends /Portal/Api).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host, self.port, self.verbose = host, port, verbose
        self.state = SandboxState()
        self.faults = FaultBook()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SmcSandbox:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self)
        self.port = int(server.server_address[1])  # keep it: a restart binds the same port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"smc-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SmcSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/Portal/Api"

    # -- seeding ---------------------------------------------------------------------------
    def add_service_account(self, key: str, secret: str) -> None:
        self.state.add_service_account(key, secret)

    def remove_service_account(self, key: str) -> None:
        self.state.remove_service_account(key)

    def add_organization(self, name: str) -> None:
        self.state.add_organization(name)

    def add_list(
        self,
        org: str,
        api_name: str,
        fields: Iterable[Mapping[str, Any]] = (),
        type: str = "Datalist",
        name: str | None = None,
    ) -> None:
        self.state.add_list(org, api_name, fields, type, name)

    def add_fields(self, org: str, list_name: str, fields: Iterable[Mapping[str, Any]]) -> None:
        self.state.add_fields(org, list_name, fields)

    def remove_field(self, org: str, list_name: str, name: str) -> None:
        self.state.remove_field(org, list_name, name)

    def add_segment(
        self,
        org: str,
        list_name: str,
        api_name: str,
        segment_type: str = "Static",
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        self.state.add_segment(org, list_name, api_name, segment_type, name, description)

    def add_journey(self, org: str, api_name: str, list_name: str, name: str | None = None) -> None:
        """A transactional journey whose lookups (scope MASTER) search the user list `list_name`."""
        self.state.add_journey(org, api_name, list_name, name)

    @property
    def validation(self) -> str:
        """How invalid rows are answered: "partial" (200, named) or "all_or_nothing" (400)."""
        return self.state.validation

    @validation.setter
    def validation(self, mode: str) -> None:
        if mode not in ("partial", "all_or_nothing"):
            raise ValueError("validation must be partial or all_or_nothing")
        self.state.validation = mode

    # -- inspection ------------------------------------------------------------------------
    def rows(self, org: str, list_name: str) -> list[JsonDict]:
        return self.state.rows(org, list_name)

    def segment_members(self, org: str, list_name: str, segment: str) -> list[JsonDict]:
        return self.state.segment_members(org, list_name, segment)

    def messages(self, org: str, journey: str) -> list[JsonDict]:
        """The messages a transactional journey sent: id, journey, recipient, language, data,
        profile_id and profile (the record's values when it was sent; None for an address)."""
        return self.state.messages(org, journey)

    @property
    def requests_log(self) -> list[RecordedRequest]:
        return self.state.requests_log

    def clear_requests_log(self) -> None:
        self.state.clear_requests_log()

    # -- faults ----------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def latency_s(self) -> float:
        return self.faults.latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        self.faults.latency_s = value

    def reset(self) -> None:
        """Forget everything: accounts, organizations, lists, rows, journeys, the log, faults, latency."""
        self.state.reset()
        self.faults.clear()
        self.faults.latency_s = 0.0
