"""A switchable fault proxy in front of the AWS emulator (moto), over real HTTP on loopback.

Point one service at it (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`) and
choose what that service does: pass requests through to moto, refuse connections (the port is
closed, like an unreachable VPC endpoint), answer throttling, access-denied, validation or 5xx
errors, pass requests on late, or hang without an answer. The other services keep talking to moto directly.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Mode = Literal["pass", "refuse", "throttle", "error", "deny", "invalid", "hang", "slow"]

# What a throttled or failing AWS JSON-protocol service answers (botocore reads `__type`).
_ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle-dynamodb": (
        400,
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    ),
    "throttle-secretsmanager": (400, "ThrottlingException", "Rate exceeded"),
    "error": (503, "ServiceUnavailable", "Service unavailable"),
    "deny": (400, "AccessDeniedException", "User is not authorized to perform this action"),
    # what DynamoDB answers a malformed request (e.g. a BatchGetItem key list with duplicates)
    "invalid": (400, "com.amazon.coral.validate#ValidationException", "Invalid request"),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: AwsFaultProxy) -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are the point of this proxy

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        proxy: AwsFaultProxy = self.server.proxy  # type: ignore[attr-defined]
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        with proxy.track(operation):
            self._serve(proxy, operation)

    def _serve(self, proxy: AwsFaultProxy, operation: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if proxy.answer is not None:
            own = proxy.answer(operation, json.loads(body or b"{}"))
            if own is not None:
                self._answer(own[0], json.dumps(own[1]).encode(), {})
                return
        mode = proxy.mode
        if proxy.only is not None and proxy.only not in self.headers.get("X-Amz-Target", ""):
            mode = "pass"  # a fault aimed at one operation (e.g. "UpdateItem") spares the others
        proxy.seen += 1
        if mode == "refuse":  # a keep-alive connection that outlived the listening socket
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "hang":
            proxy.released.wait(proxy.hang_s)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "slow":  # a service that answers, late
            time.sleep(proxy.slow_s)
        if mode in ("throttle", "error", "deny", "invalid"):
            key = f"throttle-{proxy.service}" if mode == "throttle" else mode
            status, kind, message = _ERRORS[key]
            proxy.failed += 1
            self._answer(status, json.dumps({"__type": kind, "message": message}).encode(), {})
            return
        target = urlsplit(proxy.target)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            upstream = conn.getresponse()
            data = upstream.read()
            passthrough = {
                k: v
                for k, v in upstream.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date")
            }
            self._answer(upstream.status, data, passthrough)
        finally:
            conn.close()

    do_GET = do_PUT = do_DELETE = do_POST

    def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if not any(k.lower() == "content-type" for k in headers):
            self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class AwsFaultProxy:
    """One AWS service's endpoint; `mode` decides what happens to each request.

    `refuse` really closes the listening socket (connection refused); any other mode reopens it
    on the same port, so a client created during the outage recovers without being rebuilt.
    """

    def __init__(self, target: str, service: Literal["dynamodb", "secretsmanager", "logs"]) -> None:
        self.target = target
        self.service = service
        self.port = 0
        self.seen = 0  # requests that reached the proxy (refused connections never do)
        self.failed = 0
        self.hang_s = 30.0
        self.slow_s = 0.1  # how late "slow" passes each request on
        self.only: str | None = None  # apply the mode only to this operation (X-Amz-Target part)
        self.operations: list[str] = []  # every request's operation name (e.g. "BatchGetItem")
        # Answers chosen requests itself: (operation, request body) -> (status, JSON body) or None
        # to go on as `mode` says (it may also just wait, to stretch a moment).
        self.answer: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]] | None] | None = None
        self.peak_in_flight: dict[str, int] = {}  # most requests of an operation served at once
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self.released = threading.Event()
        self._mode: Mode = "pass"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def track(self, operation: str) -> Iterator[None]:
        """Count a request of `operation` as served until the block ends."""
        with self._lock:
            self.operations.append(operation)
            now = self._in_flight[operation] = self._in_flight.get(operation, 0) + 1
            self.peak_in_flight[operation] = max(now, self.peak_in_flight.get(operation, 0))
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[operation] -= 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "refuse":
            self._close()
        else:
            self.released.set() if mode == "pass" else self.released.clear()
            self._open()

    def start(self) -> AwsFaultProxy:
        self._open()
        return self

    def stop(self) -> None:
        self.released.set()
        self._close()

    def _open(self) -> None:
        if self._server is not None:
            return
        for _ in range(50):  # the port can take a moment to be reusable after a close
            try:
                server = _Server(("127.0.0.1", self.port), self)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"cannot reopen port {self.port}")
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
