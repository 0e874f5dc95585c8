"""Every file in events/ through the real handler (moto + SMC sandbox over HTTP): the documented
status, outcome counts and SMC effect of events/cases.json, in the order a demo sends them."""

from __future__ import annotations

import json
from pathlib import Path

from tests import support

EVENTS = Path(__file__).resolve().parent.parent / "events"


def _members(stack) -> set[str]:
    return {m["CUSTOMER_ID"] for m in stack.members()}


def _rows(calls, method: str, path_end: str) -> int:
    return sum(c.rows or 0 for c in calls if c.method == method and c.path.endswith(path_end))


def test_every_event_file_gets_its_documented_status_outcomes_and_smc_effect(stack):
    example = json.loads((EVENTS / "examples.json").read_text())["secret"]
    env = json.loads((EVENTS / "env.json").read_text())["WebhookFunction"]
    stack.sandbox.add_service_account(example["apiKey"], example["apiSecret"])
    stack.set_secret(**example)
    stack.set_env(SMC_ALLOWED_EVENTS=env["SMC_ALLOWED_EVENTS"])
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
        status, body, _ = support.invoke(event)
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
        }
        assert effect == case["effect"], case["file"]
        # ... and what SMC holds afterwards agrees with it.
        rows_after = {r["MESSAGE_ID"] for r in stack.rows()}
        assert len(rows_after - rows_before) == effect["events_list_rows"], case["file"]
        members_after = _members(stack)
        assert len(members_after - members_before) == effect["segment_adds"], case["file"]
        assert len(members_before - members_after) == effect["segment_removes"], case["file"]
        if status == 401:
            assert calls == [], "an unauthenticated request reached SMC"
