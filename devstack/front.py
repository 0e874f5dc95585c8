"""The local HTTP front: what API Gateway's HTTP API does in front of the function.

Each request to `POST /segment` becomes the exact payload-2.0 event API Gateway builds (lower-case
header names with duplicates joined by commas, `cookies`, `rawQueryString`, `requestContext` with
`requestId`, `timeEpoch`, `http.method/path/sourceIp`, the body as text or base64 with
`isBase64Encoded`), and the function's answer (`statusCode`, `headers`, `cookies`, `body`,
`isBase64Encoded`) becomes the HTTP response. Other routes get API Gateway's own 404.
Invocations run one at a time, like one warm Lambda instance.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO, cast
from urllib.parse import parse_qsl, urlsplit

from devstack import ROUTE

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # HTTP API's request payload limit
FUNCTION_TIMEOUT_MS = 10_000  # template.yaml: Timeout 10
FUNCTION_MEMORY_MB = 512  # template.yaml: MemorySize 512
FUNCTION_NAME = "segment-smc-destination-local-WebhookFunction"
API_ID = "local"
ACCOUNT_ID = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{FUNCTION_NAME}"
Invoke = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContextStandIn:
    """The parts of `LambdaContext` the handler and Powertools read, timed from creation."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = FUNCTION_MEMORY_MB
    invoked_function_arn: str = FUNCTION_ARN
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "local"
    timeout_ms: int = FUNCTION_TIMEOUT_MS
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (simulated) function timeout."""
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))


def _request_id() -> str:
    return secrets.token_urlsafe(12)[:16]


def build_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    port: int,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event for one request to the `POST /segment` route."""
    now = now or datetime.now(UTC)
    url = urlsplit(target)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    forwarded = merged.get("x-forwarded-for")
    merged["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    merged["x-forwarded-port"] = str(port)
    merged["x-forwarded-proto"] = "http"
    merged.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}")
    host = merged.get("host", "localhost").split(":")[0]
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"POST {ROUTE}",
        "rawPath": url.path,
        "rawQueryString": url.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if url.query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(url.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": method,
            "path": url.path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": request_id or _request_id(),
        "routeKey": f"POST {ROUTE}",
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if body:
        try:
            event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
    else:
        event["isBase64Encoded"] = False
    return event


Answer = tuple[int, list[tuple[str, str]], bytes]


def http_answer(result: Any) -> Answer:
    """Turn the function's return value into (status, headers, body) as HTTP API does for payload 2.0."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # HTTP API infers a 200 JSON answer from anything else the function returns.
        return 200, [("content-type", "application/json")], json.dumps(result).encode()
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    headers += [("set-cookie", str(cookie)) for cookie in result.get("cookies") or []]
    body_text = result.get("body")
    body = b""
    if isinstance(body_text, str):
        try:
            body = base64.b64decode(body_text) if result.get("isBase64Encoded") else body_text.encode()
        except (binascii.Error, ValueError):
            return 502, [("content-type", "application/json")], b'{"message":"Internal Server Error"}'
    if body and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    return int(result["statusCode"]), headers, body


class FrontServer(ThreadingHTTPServer):
    """Serves the webhook route by invoking `invoke(event, context)`, one invocation at a time."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, invoke: Invoke, access: TextIO, function_out: TextIO) -> None:
        self.invoke = invoke
        self.access = access  # one line per request (the terminal)
        self.function_out = function_out  # what the function prints: its EMF metrics
        self.invocation_lock = threading.Lock()
        super().__init__((host, port), _FrontHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; skip it.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def run_function(self, event: dict[str, Any]) -> Answer:
        """Invoke the function like Lambda would; a crash is API Gateway's 500."""
        with self.invocation_lock, contextlib.redirect_stdout(self.function_out):
            try:
                result = self.invoke(event, LambdaContextStandIn())
            except Exception as exc:  # the function crashed: API Gateway answers 500 itself
                print(json.dumps({"level": "ERROR", "message": f"function crashed: {exc!r}"}))
                return 500, [("content-type", "application/json")], b'{"message":"Internal Server Error"}'
        return http_answer(result)


def _summary(body: bytes, headers: list[tuple[str, str]]) -> str:
    """The answer in a few words: outcome counts, or the error code."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    if "received" not in data:
        return str(data.get("error") or data.get("message") or "")
    outcomes = ("delivered", "filtered", "duplicate", "rejected", "retried")
    text = ", ".join(f"{k} {data[k]}" for k in outcomes if data.get(k)) or "nothing"
    replayed = any(k.lower() == "x-idempotent-replay" for k, _ in headers)
    return text + (" (replayed from the idempotency store)" if replayed else "")


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalApiGateway/1.0"

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one access line of our own per request instead

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += size
                if total > MAX_PAYLOAD_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        server = cast(FrontServer, self.server)
        started = time.monotonic()
        request_id = _request_id()
        body = self._read_body()
        path = urlsplit(self.path).path
        answer: Answer
        if body is None:
            self.close_connection = True
            answer = 413, [("content-type", "application/json")], b'{"message":"Request Entity Too Large"}'
        elif self.command != "POST" or path != ROUTE:
            answer = 404, [("content-type", "application/json")], b'{"message":"Not Found"}'
        else:
            event = build_event(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.client_address[0],
                server.server_port,
                request_id=request_id,
            )
            answer = server.run_function(event)
        status, headers, data = answer
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("apigw-requestid", request_id)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        elapsed = (time.monotonic() - started) * 1000
        stamp = datetime.now().strftime("%H:%M:%S")
        line = f"{stamp} {self.command} {self.path} -> {status} {elapsed:.0f} ms  {_summary(data, headers)}"
        print(line.rstrip(), file=server.access, flush=True)
