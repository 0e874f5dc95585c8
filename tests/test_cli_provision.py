"""`smc-destination provision`: creates what is missing, changes nothing the second time or in a dry run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handler.cli import main
from handler.schema import EVENTS_LIST_COLUMNS, EVENTS_LIST_FIELDS
from sandbox.state import EVENTS_FIELDS
from tests import support


def posts(stack: Any) -> list[Any]:
    return [r for r in stack.sandbox.requests_log if r.method != "GET"]


def columns(stack: Any, list_name: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in stack.sandbox.state.fields(support.ORG, list_name)}


def test_creates_the_list_and_the_second_run_changes_nothing(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sandbox.clear_requests_log()
    # When provision runs for a list SMC does not have
    assert main(["provision", "--events-list", "fresh_events"]) == 0
    out = capsys.readouterr().out
    # Then it made exactly two calls: create the list, add every column
    calls = posts(stack)
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in calls] == [
        ("POST", "lists", 200),
        ("POST", "fields", 201),
    ]
    assert "create list 'fresh_events': done" in out
    made = columns(stack, "fresh_events")
    assert tuple(made) == EVENTS_LIST_FIELDS
    for column in EVENTS_LIST_COLUMNS:
        assert made[column.name]["data_type"] == column.data_type
        assert made[column.name]["allow_null"] == column.allow_null
    assert stack.sandbox.state.list_info(support.ORG, "fresh_events")["type"] == "Datalist"
    # When it runs again, Then it finds nothing to do and the request log shows no change at all
    stack.sandbox.clear_requests_log()
    assert main(["provision", "--events-list", "fresh_events"]) == 0
    assert "already has every column: nothing to do" in capsys.readouterr().out
    assert posts(stack) == []
    assert stack.sandbox.requests_log  # it did read
    # And check is now happy with it
    assert main(["check", "--events-list", "fresh_events"]) == 0


def test_adds_only_the_missing_columns(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fields = [f for f in EVENTS_FIELDS if f["name"] not in ("PREVIOUS_ID", "CONTEXT")]
    stack.sandbox.add_list(support.ORG, "partial", fields)
    stack.sandbox.clear_requests_log()
    assert main(["provision", "--events-list", "partial"]) == 0
    (call,) = posts(stack)
    assert call.path.endswith("/lists/partial/fields") and call.status == 201
    assert "add columns PREVIOUS_ID, CONTEXT: done" in capsys.readouterr().out
    assert set(columns(stack, "partial")) == set(EVENTS_LIST_FIELDS)


def test_dry_run_shows_the_exact_calls_and_changes_nothing(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sandbox.clear_requests_log()
    assert main(["provision", "--events-list", "planned", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert posts(stack) == []
    assert "planned" not in {lst["api_name"] for lst in stack.sandbox.state.lists(support.ORG)}
    base = f"{stack.sandbox.base_url}/Portal/Api/organizations/{support.ORG}"
    assert "dry run: 2 call(s) would be made; nothing was changed." in out
    assert f"POST {base}/lists\n" in out
    assert f"POST {base}/lists/planned/fields\n" in out
    body = out.split(f"POST {base}/lists\n", 1)[1].split("\nPOST ", 1)[0]
    assert json.loads(body)["api_name"] == "planned" and json.loads(body)["type"] == "Datalist"


def test_an_incompatible_column_is_reported_not_changed(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = [dict(f) for f in EVENTS_FIELDS if f["name"] != "CONTEXT"]
    fields[3]["data_type"] = "Numeric"  # USER_ID
    stack.sandbox.add_list(support.ORG, "odd", fields)
    stack.sandbox.clear_requests_log()
    assert main(["provision", "--events-list", "odd"]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL  column odd.USER_ID is Numeric" in out and "provision never changes an existing column" in out
    )
    # the missing column is still added: the incompatible one needs a person
    assert [c.path.rsplit("/", 1)[-1] for c in posts(stack)] == ["fields"]


def test_smc_refusing_the_key(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.set_secret(apiSecret="wrong")
    assert main(["provision"]) == 1
    assert "SMC refused the service account (401)" in capsys.readouterr().out
    assert posts(stack) == []


def test_provision_makes_no_write_to_the_user_list_when_profile_settings_are_set(stack: Any) -> None:
    # Given profile settings whose list lacks a mapped column, and a journey SMC does not have
    fields = {"MAIL": "traits.email", "NICK": "traits.nick"}
    stack.set_env(
        SMC_PROFILE_LIST="users",
        SMC_PROFILE_KEY="CUSTOMER_ID",
        SMC_PROFILE_FIELDS=json.dumps(fields),
        SMC_TRANSACTIONAL_EVENTS=json.dumps({"Password Reset": "pw_reset"}),
    )
    before = columns(stack, "users")
    stack.sandbox.clear_requests_log()
    # When provision creates the events list
    assert main(["provision", "--events-list", "fresh_events_2"]) == 0
    # Then every write went to the events list: the user list, its segments and journeys are untouched
    writes = [r.path for r in posts(stack)]
    assert writes and all("/lists/fresh_events_2" in path or path.endswith("/lists") for path in writes)
    assert columns(stack, "users") == before
    assert [s["api_name"] for s in stack.sandbox.state.segments(support.ORG, "users")] == ["vip"]
