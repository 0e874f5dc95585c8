"""Bounded load test: concurrent single events and batches against the webhook, on loopback only.

    python -m load.run                      # starts the local stack (`python -m devstack`) itself
    python -m load.run --url http://127.0.0.1:3000/segment --sandbox-url http://127.0.0.1:8899

By default it starts the local stack as a subprocess on free ports (moto, the SMC sandbox and the
HTTP front that plays API Gateway and calls the real `lambda_handler`, one invocation at a time,
like one warm Lambda instance), drives it for a fixed time with a bounded number of requests, then
checks in the sandbox that every event it sent is there exactly once. With `--url` it drives a
stack that is already running (its credentials: `--shared-secret`, `--bearer-token`).

Figures (printed and written to load/results.json): requests/s, events/s, latency p50/p90/p99,
errors (any answer other than 200, or no answer; must be 0 with a healthy sandbox), SMC calls,
events lost and duplicated. Exit status 1 when errors, losses or duplicates are not 0.
Only the standard library and `requests` (for the sandbox's admin API) are used.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import http.client
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from devstack.state import free_ports

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results.json")
# The local stack's example credentials (events/examples.json).
SHARED_SECRET = "example-shared-secret"  # noqa: S105 - a public example value
BEARER_TOKEN = "example-bearer-token"  # noqa: S105 - a public example value
TRACK_NAMES = ("Order Completed", "Product Viewed", "Signed Up")  # the example allowlist
START_TIMEOUT_S = 60


# -- the workload -----------------------------------------------------------------------------------
def _event(kind: str, rng: random.Random, user: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"load-{uuid.uuid4()}",
        "userId": user,
        "anonymousId": f"anon-{user}",
        "timestamp": now,
        "receivedAt": now,
        "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js", "version": "5.2.0"}},
    }
    if kind == "track":
        event["event"] = rng.choice(TRACK_NAMES)
        event["properties"] = {"orderId": f"o-{rng.randrange(10**6)}", "total": rng.randrange(10**4) / 100}
    elif kind == "identify":
        event["traits"] = {"plan": rng.choice(("free", "pro")), "firstName": "Load"}
    elif kind == "page":
        event.update(name="Pricing", properties={"path": "/pricing", "title": "Pricing"})
    elif kind == "screen":
        event.update(name="Checkout", properties={"step": 2})
    elif kind == "alias":
        event["previousId"] = f"anon-{user}"
    elif kind == "group":
        event["groupId"] = "vip"
        event["traits"] = {"matchkey": "CUSTOMER_ID", "userlist": "users", "method": "ADD"}
    return event


ROW_KINDS = ("track", "track", "track", "identify", "page", "screen", "alias")


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]
    events: list[dict[str, Any]]


def make_request(rng: random.Random, batch_share: float, batch_size: int, n: int) -> Request:
    """A signed single event, or (`batch_share` of the time) a bearer batch of `batch_size` events."""
    headers = {"Content-Type": "application/json", "User-Agent": "segment-smc-load/1.0"}
    if rng.random() >= batch_share:
        event = _event(rng.choice(ROW_KINDS), rng, f"load-user-{n}")
        body = json.dumps(event, separators=(",", ":")).encode()
        headers["X-Signature"] = hmac.new(SHARED_SECRET.encode(), body, hashlib.sha1).hexdigest()
        return Request(body, headers, [event])
    events = [_event(rng.choice(ROW_KINDS), rng, f"load-user-{n}-{i}") for i in range(batch_size - 2)]
    events += [_event("group", rng, f"load-cust-{n}-{i}") for i in range(2)]
    rng.shuffle(events)
    payload: Any = events if rng.random() < 0.5 else {"batch": events, "context": {}}
    headers["Authorization"] = f"Bearer {BEARER_TOKEN}"
    headers["User-Agent"] = "Segment (Actions) segment-smc-load"
    return Request(json.dumps(payload, separators=(",", ":")).encode(), headers, events)


# -- the client ---------------------------------------------------------------------------------------
@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    events: int = 0
    sent_ids: list[str] = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request, status: str, ms: float, detail: str = "") -> None:
        with self.lock:
            self.latencies_ms.append(ms)
            self.statuses[status] += 1
            self.events += len(request.events)
            for event in request.events:
                if event["type"] == "group":
                    self.member_ids.append(event["userId"])
                else:
                    self.sent_ids.append(event["messageId"])
            if status != "200" and len(self.error_samples) < 5:
                self.error_samples.append(f"{status}: {detail[:200]}")


def worker(
    url: str,
    stop_at: float,
    budget: threading.Semaphore,
    results: Results,
    seed: int,
    args: argparse.Namespace,
) -> None:
    parts = urlsplit(url)
    rng = random.Random(seed)  # noqa: S311 - workload shape, not security
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=args.timeout)
    n = 0
    while time.monotonic() < stop_at and budget.acquire(blocking=False):
        n += 1
        request = make_request(rng, args.batch_share, args.batch_size, seed * 1_000_000 + n)
        started = time.perf_counter()
        try:
            conn.request("POST", parts.path or "/", body=request.body, headers=request.headers)
            response = conn.getresponse()
            data = response.read()
            ms = (time.perf_counter() - started) * 1000
            results.add(request, str(response.status), ms, data.decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException) as exc:
            ms = (time.perf_counter() - started) * 1000
            results.add(request, "no-answer", ms, type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port or 80, timeout=args.timeout
            )
    conn.close()


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


# -- the stack ----------------------------------------------------------------------------------------
@contextmanager
def local_stack(log_level: str) -> Iterator[dict[str, Any]]:
    """`python -m devstack run` on free ports and a scratch state folder; yields its stack.json."""
    front, sandbox, moto = free_ports(3)
    with tempfile.TemporaryDirectory(prefix="segment-smc-load-") as scratch:
        state_dir = Path(scratch)
        log = (state_dir / "stack.out").open("w")
        command = [
            sys.executable, "-m", "devstack", "run",
            "--front-port", str(front), "--sandbox-port", str(sandbox), "--moto-port", str(moto),
            "--state-dir", str(state_dir), "--env", f"POWERTOOLS_LOG_LEVEL={log_level}",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMC_"))}
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        try:
            state_file = state_dir / "stack.json"
            deadline = time.monotonic() + START_TIMEOUT_S
            while not state_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise SystemExit(
                        "the local stack did not start:\n" + (state_dir / "stack.out").read_text()
                    )
                time.sleep(0.1)
            yield json.loads(state_file.read_text())
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


# -- the verdict --------------------------------------------------------------------------------------
def smc_state(sandbox_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    base = f"{sandbox_url}/_sandbox"
    calls = requests.get(f"{base}/requests", timeout=60).json()["requests"]
    rows = requests.get(f"{base}/organizations/demo/lists/segment_events/rows", timeout=60).json()["rows"]
    members = requests.get(f"{base}/organizations/demo/lists/users/segments/vip/members", timeout=60).json()
    return calls, rows, members["members"]


def run(args: argparse.Namespace, url: str, sandbox_url: str | None) -> dict[str, Any]:
    before = len(smc_state(sandbox_url)[0]) if sandbox_url else 0
    results = Results()
    budget = threading.Semaphore(args.max_requests)
    started = time.monotonic()
    stop_at = started + args.duration
    threads = [
        threading.Thread(target=worker, args=(url, stop_at, budget, results, seed + 1, args), daemon=True)
        for seed in range(args.concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    requests_made = sum(results.statuses.values())
    errors = requests_made - results.statuses["200"]
    figures: dict[str, Any] = {
        "target": "local stack (python -m devstack): moto + SMC sandbox + API Gateway front, "
        "one invocation at a time (one warm Lambda instance)"
        if not args.url
        else url,
        "duration_s": round(elapsed, 2),
        "concurrency": args.concurrency,
        "mix": f"{1 - args.batch_share:.0%} signed single events, {args.batch_share:.0%} bearer batches "
        f"of {args.batch_size} (array and {{batch}} shapes; all call types, 2 group events each)",
        "requests": requests_made,
        "events": results.events,
        "requests_per_s": round(requests_made / elapsed, 1),
        # The local front runs one invocation at a time: this is the function's own time per request.
        "mean_invocation_ms": round(elapsed * 1000 / max(1, requests_made), 1) if not args.url else None,
        "events_per_s": round(results.events / elapsed, 1),
        "latency_ms": {
            "p50": percentile(results.latencies_ms, 0.50),
            "p90": percentile(results.latencies_ms, 0.90),
            "p99": percentile(results.latencies_ms, 0.99),
            "max": round(max(results.latencies_ms, default=0.0), 1),
        },
        "statuses": dict(results.statuses),
        "errors": errors,
        "error_samples": results.error_samples,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if sandbox_url:
        calls, rows, members = smc_state(sandbox_url)
        per_id = collections.Counter(row["MESSAGE_ID"] for row in rows)
        figures["smc_calls"] = sum(1 for call in calls[before:] if "/data" in call["path"])
        figures["events_per_smc_call"] = round(results.events / max(1, figures["smc_calls"]), 1)
        figures["events_lost"] = sum(1 for mid in results.sent_ids if per_id.get(mid, 0) == 0)
        figures["duplicate_rows"] = sum(1 for mid in results.sent_ids if per_id.get(mid, 0) > 1)
        present = {m["CUSTOMER_ID"] for m in members}
        figures["memberships_lost"] = sum(1 for customer in results.member_ids if customer not in present)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    global SHARED_SECRET, BEARER_TOKEN
    parser = argparse.ArgumentParser(prog="python -m load.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--url", help="a running webhook (default: start the local stack)")
    parser.add_argument("--sandbox-url", help="its SMC sandbox, to count SMC calls and check rows")
    parser.add_argument("--shared-secret", default=SHARED_SECRET)
    parser.add_argument("--bearer-token", default=BEARER_TOKEN)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds (default %(default)s)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="upper bound (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default %(default)s)")
    parser.add_argument("--batch-share", type=float, default=0.2, help="share of batch requests")
    parser.add_argument("--batch-size", type=int, default=50, help="events per batch")
    parser.add_argument("--timeout", type=float, default=10.0, help="client time-out per request, s")
    parser.add_argument("--log-level", default="INFO", help="the function's POWERTOOLS_LOG_LEVEL")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the figures go")
    args = parser.parse_args(argv)
    SHARED_SECRET, BEARER_TOKEN = args.shared_secret, args.bearer_token
    for name, value in (("--url", args.url), ("--sandbox-url", args.sandbox_url)):
        host = urlsplit(value).hostname if value else "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"{name} must be a loopback address: this is a local load test")
    if args.url:
        figures = run(args, args.url, args.sandbox_url)
    else:
        with local_stack(args.log_level) as state:
            figures = run(args, state["webhook_url"], state["sandbox_url"])
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    failed = figures["errors"] or figures.get("events_lost") or figures.get("duplicate_rows")
    failed = failed or figures.get("memberships_lost")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
