"""`make demo`: send every `events/` case through the running local stack and show what SMC now holds.

Each case's body (decoded when base64) is posted with its own headers (signature or bearer token,
content type, user agent) to the stack's webhook URL; the answer is compared with the status
`events/cases.json` expects, and the SMC sandbox's admin API says how many rows the events list
holds, how many members the static segment has and how many SMC calls the request caused.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import requests

from devstack.examples import EVENTS_DIR
from devstack.state import read_state

# Added by API Gateway or the HTTP client itself: the front adds its own.
HOP_HEADERS = frozenset(
    {"host", "content-length", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-amzn-trace-id"}
)
OUTCOMES = ("delivered", "filtered", "duplicate", "rejected", "retried")


class Sandbox:
    """Reads the SMC sandbox's admin API (absent when the stack points at a real tenant)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.url = state.get("sandbox_url")
        org = f"/_sandbox/organizations/{state.get('organization', 'demo')}"
        users = f"{org}/lists/{state.get('users_list')}"
        # What the table follows: (column, admin API path, the key of the list in its answer)
        self.views = [
            ("events rows", f"{org}/lists/{state.get('events_list')}/rows", "rows"),
            ("vip members", f"{users}/segments/{state.get('segment')}/members", "members"),
            ("profiles", f"{users}/rows", "rows"),
            ("audience", f"{users}/segments/{state.get('audience_segment')}/members", "members"),
            ("messages", f"{org}/journeys/{state.get('journey')}/messages", "messages"),
        ]

    def _get(self, path: str, key: str) -> int | None:
        if not self.url:
            return None
        try:
            response = requests.get(self.url + path, timeout=10)
            return len(response.json()[key])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

    def snapshot(self) -> list[int | None]:
        """SMC requests so far, then each view's count."""
        return [self._get("/_sandbox/requests", "requests")] + [
            self._get(path, key) for _, path, key in self.views
        ]


def _body(event: dict[str, Any]) -> bytes:
    text = event.get("body") or ""
    return base64.b64decode(text) if event.get("isBase64Encoded") else str(text).encode("utf-8")


def _outcome(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    if "received" in data:
        return ", ".join(f"{k} {data[k]}" for k in OUTCOMES if data.get(k)) or "nothing"
    return str(data.get("error") or data.get("message") or "")


def _count(now: int | None, before: int | None) -> str:
    if now is None:
        return "-"
    delta = now - before if before is not None else 0
    return f"{now} ({delta:+d})" if delta else str(now)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out
        )
        if number == 0:
            print("  ".join("-" * width for width in widths), file=out)


def run_demo(state_dir: Path, events_dir: Path = EVENTS_DIR, out: TextIO | None = None) -> int:
    """Post every case; print the table; 0 when every status is the expected one."""
    out = out or sys.stdout
    state = read_state(state_dir)
    if state is None:
        print(f"No local stack is running (no {state_dir}/stack.json): start one with `make run`.", file=out)
        return 2
    try:
        cases = json.loads((events_dir / "cases.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"Cannot read {events_dir}/cases.json ({exc}): run `make events`.", file=out)
        return 2
    url = str(state["webhook_url"])
    sandbox = Sandbox(state)
    print(f"Sending {len(cases)} cases from {events_dir} to {url}\n", file=out)
    table = [
        [
            "#",
            "case",
            "auth",
            "expect",
            "got",
            "outcome",
            "SMC calls",
            *(name for name, _, _ in sandbox.views),
        ]
    ]
    before = sandbox.snapshot()
    differ = 0
    for number, case in enumerate(cases, start=1):
        event = json.loads((events_dir / case["file"]).read_text(encoding="utf-8"))
        headers = {k: v for k, v in event.get("headers", {}).items() if k.lower() not in HOP_HEADERS}
        try:
            response = requests.post(url, data=_body(event), headers=headers, timeout=30)
        except requests.RequestException as exc:
            print(
                f"The stack at {url} does not answer ({type(exc).__name__}): is `make run` still up?",
                file=out,
            )
            return 2
        try:
            data = response.json()
        except ValueError:
            data = None
        replayed = " (replayed)" if response.headers.get("X-Idempotent-Replay") else ""
        after = sandbox.snapshot()
        calls = "-" if after[0] is None or before[0] is None else str(after[0] - before[0])
        mark = "" if response.status_code == case["status"] else "  <- differs"
        differ += bool(mark)
        table.append(
            [
                str(number),
                case["file"].removesuffix(".json"),
                case.get("auth", ""),
                str(case["status"]),
                f"{response.status_code}{mark}",
                _outcome(data) + replayed,
                calls,
                *(_count(now, was) for now, was in zip(after[1:], before[1:], strict=True)),
            ]
        )
        before = after
    _table(table, out)
    print(file=out)
    if differ:
        print(f"{differ} answer(s) differ from {events_dir}/cases.json.", file=out)
    else:
        print(f"All {len(cases)} answers are the expected ones.", file=out)
    if sandbox.url:
        for name, path, _ in sandbox.views:
            print(f"{name + ':':<13} {sandbox.url}{path}", file=out)
    print(f"Function log: {state.get('log_file')}", file=out)
    print(
        "Run it again: the same requests are then answered from the idempotency store (replayed).", file=out
    )
    return 1 if differ else 0
