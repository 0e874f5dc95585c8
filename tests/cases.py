"""Every file in events/ through a function, checked against events/cases.json: the documented
status, outcome counts and SMC effect, in the order a demo sends them. One checker for each way
the function runs: in-process (test_events_replay) and as the built artifact (test_lambda_artifact)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"
# (event) -> (HTTP status, JSON body) of the function's answer
Invoke = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def decode_answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The function's API Gateway answer as (status, JSON body)."""
    return response["statusCode"], json.loads(response["body"])


def use_example_credentials(stack) -> None:
    """The stack's secret and SMC account become the example ones events/ is signed with."""
    example = json.loads((EVENTS / "examples.json").read_text())["secret"]
    stack.sandbox.add_service_account(example["apiKey"], example["apiSecret"])
    stack.set_secret(**example)


def _members(stack) -> set[str]:
    return {m["CUSTOMER_ID"] for m in stack.members()}


def _rows(calls, method: str, path_end: str) -> int:
    """Rows of the calls SMC answered with a success (a 404 before a segment is created is none)."""
    return sum(
        c.rows or 0 for c in calls if c.method == method and c.path.endswith(path_end) and c.status == 200
    )


def check_every_case(stack, invoke: Invoke) -> None:
    """Send each events/ file through `invoke`; assert what cases.json says of it."""
    cases = json.loads((EVENTS / "cases.json").read_text())
    assert {case["file"] for case in cases} == {p.name for p in EVENTS.glob("*.json")} - {
        "cases.json",
        "env.json",
        "examples.json",
    }
    for case in cases:
        rows_before = {r["MESSAGE_ID"] for r in stack.rows()}
        members_before = _members(stack)
        calls_before = len(stack.smc_calls("/"))
        event = json.loads((EVENTS / case["file"]).read_text())
        status, body = invoke(event)
        calls = stack.smc_calls("/")[calls_before:]
        assert status == case["status"], (case["file"], body)
        if case["outcomes"] is not None:
            assert {k: body[k] for k in case["outcomes"]} == case["outcomes"], case["file"]
        else:
            assert "error" in body, case["file"]
        # The effect is what SMC was asked to do (rows per operation) ...
        effect = {
            "events_list_rows": _rows(calls, "POST", "/lists/segment_events/data/load"),
            "events_list_deletes": _rows(calls, "DELETE", "/lists/segment_events/data"),
            "segment_adds": _rows(calls, "POST", "/segments/vip/data/load"),
            "segment_removes": _rows(calls, "DELETE", "/segments/vip/data"),
            "profile_rows": _rows(calls, "POST", "/lists/users/data/load"),
            "profile_deletes": _rows(calls, "DELETE", "/lists/users/data"),
            "audience_adds": _rows(calls, "POST", "/segments/high_value_customers/data/load"),
            "transactional_sends": _rows(calls, "POST", "/journeys/transactional/order_confirmation/send"),
        }
        assert effect == case["effect"], (case["file"], effect)
        # ... and what SMC holds afterwards agrees with it.
        rows_after = {r["MESSAGE_ID"] for r in stack.rows()}
        assert len(rows_after - rows_before) == effect["events_list_rows"], case["file"]
        members_after = _members(stack)
        assert len(members_after - members_before) == effect["segment_adds"], case["file"]
        assert len(members_before - members_after) == effect["segment_removes"], case["file"]
        if status == 401:
            assert calls == [], "an unauthenticated request reached SMC"
