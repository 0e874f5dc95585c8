"""The Lambda Runtime API, the side a runtime client (awslambdaric) talks to.

Four routes, as Lambda serves them on `AWS_LAMBDA_RUNTIME_API`:

- `GET  /2018-06-01/runtime/invocation/next`: waits for the next invocation and hands over its event,
  with the `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and `-Trace-Id` headers;
- `POST /2018-06-01/runtime/invocation/{id}/response`: the function's answer;
- `POST /2018-06-01/runtime/invocation/{id}/error`: the function failed (awslambdaric also posts
  here when it cannot serialise the answer: `Runtime.MarshalError`);
- `POST /2018-06-01/runtime/init/error`: the handler could not even be loaded.

`RuntimeApi.submit` queues an event; the returned `Invocation` is settled by the runtime's post.
Watching the runtime process (crashes, time-outs) is `devstack.artifact`'s part.
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

PREFIX = "/2018-06-01/runtime"
_POST_ROUTE = re.compile(rf"^{PREFIX}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
POLL_S = 0.05  # how often a waiting `next` looks whether the API is closing


@dataclass(frozen=True, slots=True)
class Result:
    """How an invocation ended: the function's answer (`error_type` None) or the error Lambda reports."""

    request_id: str
    payload: bytes
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        """The function answered (what API Gateway would pass on)."""
        return self.error_type is None

    def error_message(self) -> str:
        """The error's `errorMessage` (or the raw payload), for people reading a failure."""
        try:
            return str(json.loads(self.payload).get("errorMessage", ""))
        except (ValueError, AttributeError):
            return self.payload.decode("utf-8", "replace")


def error_result(request_id: str, error_type: str, message: str) -> Result:
    """An error Lambda itself reports (no runtime post): the shape of the runtime's own errors."""
    body = {"errorType": error_type, "errorMessage": message, "requestId": request_id, "stackTrace": []}
    return Result(request_id, json.dumps(body).encode(), error_type)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Invocation:
    """One event on its way through the runtime; `done` is set once `result` is."""

    event: bytes
    timeout_ms: int
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_id: str = field(
        default_factory=lambda: f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Sampled=0"
    )
    # Epoch milliseconds (Lambda-Runtime-Deadline-Ms), from the moment the runtime takes the event:
    # a cold start's init does not eat into the function's timeout.
    deadline_ms: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None

    def expired(self) -> bool:
        """The runtime took it and its deadline has passed."""
        return self.deadline_ms is not None and _now_ms() > self.deadline_ms

    def settle(self, result: Result) -> bool:
        """Record how it ended; False when it had already ended (only the first end counts)."""
        if self.done.is_set():
            return False
        self.result = result
        self.done.set()
        return True


class RuntimeApi(ThreadingHTTPServer):
    """The Runtime API on a loopback port (0: any free one), for one execution environment."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, function_arn: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.function_arn = function_arn
        self.init_error: Result | None = None
        self._queue: queue.Queue[Invocation] = queue.Queue()
        self._handed_out: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._serving: threading.Thread | None = None
        super().__init__((host, port), _RuntimeHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; skip it.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def address(self) -> str:
        """`host:port`, the value of AWS_LAMBDA_RUNTIME_API."""
        return f"{self.server_name}:{self.server_port}"

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._serving = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": POLL_S}, name="runtime-api", daemon=True
        )
        self._serving.start()

    def close(self) -> None:
        """Stop serving; a runtime still waiting for `next` gets no more events."""
        self._closing.set()
        if self._serving is not None:
            self.shutdown()  # returns only once serve_forever runs and has stopped
        self.server_close()

    def submit(self, event: bytes, timeout_ms: int) -> Invocation:
        """Queue `event` for the runtime's next `next`; it gets `timeout_ms` once taken."""
        invocation = Invocation(event, timeout_ms)
        self._queue.put(invocation)
        return invocation

    def discard(self, invocation: Invocation) -> None:
        """Forget an invocation that ended without the runtime (its process died or timed out)."""
        with self._lock:
            self._handed_out.pop(invocation.request_id, None)

    def next_invocation(self) -> Invocation | None:
        """Block until an invocation is queued (None once the API closes)."""
        while not self._closing.is_set():
            try:
                invocation = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if invocation.done.is_set():  # given up on while queued (its process died)
                continue
            invocation.deadline_ms = _now_ms() + invocation.timeout_ms
            with self._lock:
                self._handed_out[invocation.request_id] = invocation
            return invocation
        return None

    def post(self, request_id: str, result: Result) -> bool:
        """The runtime's answer for `request_id`; False for an id it was not given."""
        with self._lock:
            invocation = self._handed_out.pop(request_id, None)
        return invocation is not None and invocation.settle(result)


def _error_type(header: str | None, body: bytes) -> str:
    """The error's type: the header when the runtime sends one, else the body's `errorType`."""
    if header:
        return header
    try:
        found = json.loads(body).get("errorType")
    except (ValueError, AttributeError):
        found = None
    return str(found) if found else "Runtime.Unknown"


class _RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and `Expect: 100-continue`, as the runtime client uses
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the function's own log is what matters

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        api = cast(RuntimeApi, self.server)
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(404, {"errorMessage": f"unknown route GET {self.path}"})
            return
        invocation = api.next_invocation()
        if invocation is None:  # closing: the runtime process is already gone
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", api.function_arn)
        self.send_header("Lambda-Runtime-Trace-Id", invocation.trace_id)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(invocation.event)))
        self.end_headers()
        self.wfile.write(invocation.event)

    def do_POST(self) -> None:
        api = cast(RuntimeApi, self.server)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == f"{PREFIX}/init/error":
            api.init_error = Result("", body, _error_type(self.headers.get(ERROR_TYPE_HEADER), body))
            self._reply(202, {"status": "OK"})
            return
        match = _POST_ROUTE.match(self.path)
        if match is None:
            self._reply(404, {"errorMessage": f"unknown route POST {self.path}"})
            return
        request_id = match["id"]
        if match["kind"] == "response":
            result = Result(request_id, body)
        else:
            result = Result(request_id, body, _error_type(self.headers.get(ERROR_TYPE_HEADER), body))
        if not api.post(request_id, result):
            self._reply(
                400, {"errorMessage": f"invalid request id {request_id}", "errorType": "InvalidRequestID"}
            )
            return
        self._reply(202, {"status": "OK"})
