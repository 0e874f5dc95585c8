"""The sandbox's transactional journeys over real HTTP: description, sends per item, lookups, faults."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox import Fault, SmcError, SmcSandbox
from tests.sandbox_http import load, org_url

JOURNEY = "order_confirmation"
BY_CUSTOMER = {"scope": "MASTER", "field": "CUSTOMER_ID"}


def send(http: requests.Session, sb: SmcSandbox, items: Any, journey: str = JOURNEY) -> requests.Response:
    url = f"{org_url(sb)}/journeys/transactional/{journey}/send"
    return http.post(url, json={"items": items}, timeout=5)


def item(recipient: str, language: str = "EN", **extra: Any) -> dict[str, Any]:
    return {"recipient": recipient, "language": language, **extra}


def add_profiles(http: requests.Session, sb: SmcSandbox, *customers: str) -> None:
    rows = [[customer, f"{customer}@example.com"] for customer in customers]
    response = load(http, sb, rows, list_name="users", keyFields="CUSTOMER_ID", fields="CUSTOMER_ID,MAIL")
    assert response.json()["result_code"] == "Succeeded"


def test_journeys_are_listed_and_described_when_seeded(sandbox: SmcSandbox, http: requests.Session) -> None:
    sandbox.add_journey("demo", "password_reset", "users", name="Password reset")
    url = f"{org_url(sandbox)}/journeys/transactional"
    assert http.get(url, timeout=5).json() == {
        "journeys": [
            {"api_name": JOURNEY, "type": "transactional"},
            {"api_name": "password_reset", "type": "transactional"},
        ]
    }
    assert http.get(f"{url}/Password_Reset", timeout=5).json() == {
        "api_name": "password_reset",
        "name": "Password reset",
        "launch_state": "launch",
        "type": "transactional",
    }
    missing = http.get(f"{url}/nope", timeout=5)
    assert (missing.status_code, missing.json()["result_code"]) == (404, "NotFound")


def test_send_answers_each_item_in_order_when_some_recipients_are_unknown(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    # Given two profiles on the journey's list
    add_profiles(http, sandbox, "user-1", "user-2")
    items = [
        item("user-1", data={"orderId": "o-1"}, lookup=BY_CUSTOMER),
        item("ghost", lookup=BY_CUSTOMER),
        item("user-2", "fr", lookup={"scope": "master", "field": "customer_id"}),
    ]
    # When one send names both and a customer that has no profile
    response = send(http, sandbox, items)
    body = response.json()
    # Then each item has its own result, in order, and only the found ones are sent
    assert (response.status_code, body["result_code"]) == (200, "PartiallySucceeded")
    assert [(a["recipient"], a["result_code"]) for a in body["response_data"]] == [
        ("user-1", "Succeeded"),
        ("ghost", "NotFound"),
        ("user-2", "Succeeded"),
    ]
    assert body["response_data"][0]["data"] == {"orderId": "o-1"}
    assert body["response_data"][1]["errors"][0]["error_code"] == "ERR_NOT_FOUND"
    sent = sandbox.messages("demo", JOURNEY)
    assert [m["id"] for m in sent] == [m["id"] for m in body["messages"]]
    assert [(m["recipient"], m["language"], m["profile"]["MAIL"]) for m in sent] == [
        ("user-1", "EN", "user-1@example.com"),
        ("user-2", "fr", "user-2@example.com"),
    ]
    assert sent[0]["data"] == {"orderId": "o-1"} and sent[0]["profile_id"] is not None


def test_send_goes_to_the_address_when_no_lookup_is_given(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    body = send(http, sandbox, [item("jane@example.com"), item("not-an-address")]).json()
    assert [a["result_code"] for a in body["response_data"]] == ["Succeeded", "ValidationFailed"]
    (message,) = sandbox.messages("demo", JOURNEY)
    assert (message["recipient"], message["profile_id"], message["profile"]) == (
        "jane@example.com",
        None,
        None,
    )


@pytest.mark.parametrize(
    "bad",
    [
        item("user-1", "ES", lookup=BY_CUSTOMER),  # not one of the organization's languages
        item("user-1", lookup={"scope": "PROFILE", "field": "CUSTOMER_ID"}),
        item("user-1", lookup={"scope": "MASTER", "field": "SHOE_SIZE"}),
        item("user-1", lookup={"scope": "MASTER"}),
    ],
)
def test_send_fails_only_that_item_when_its_language_or_lookup_is_wrong(
    sandbox: SmcSandbox, http: requests.Session, bad: dict[str, Any]
) -> None:
    add_profiles(http, sandbox, "user-1")
    body = send(http, sandbox, [bad, item("user-1", lookup=BY_CUSTOMER)]).json()
    assert body["result_code"] == "PartiallySucceeded"
    assert [a["result_code"] for a in body["response_data"]] == ["ValidationFailed", "Succeeded"]
    assert body["response_data"][0]["errors"][0]["error_code"] == "ERR_VALIDATION"
    assert len(sandbox.messages("demo", JOURNEY)) == 1


def test_send_is_failed_with_200_when_no_item_is_sent(sandbox: SmcSandbox, http: requests.Session) -> None:
    response = send(http, sandbox, [item("ghost", lookup=BY_CUSTOMER)])
    assert (response.status_code, response.json()["result_code"]) == (200, "Failed")
    assert response.json()["messages"] == []


def test_send_matches_every_profile_when_the_lookup_field_is_not_unique(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    rows = [["a", "shared@example.com"], ["b", "shared@example.com"]]
    load(http, sandbox, rows, list_name="users", keyFields="CUSTOMER_ID", fields="CUSTOMER_ID,MAIL")
    body = send(
        http, sandbox, [item("shared@example.com", lookup={"scope": "MASTER", "field": "MAIL"})]
    ).json()
    assert body["result_code"] == "Succeeded" and len(body["messages"]) == 2
    assert [m["profile"]["CUSTOMER_ID"] for m in sandbox.messages("demo", JOURNEY)] == ["a", "b"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": {"recipient": "a@example.com"}},
        {"items": ["a@example.com"]},
        {"items": [{"recipient": "a@example.com"}]},
        {"items": [{"language": "EN"}]},
        {"items": [item("a@example.com", data=[1])]},
        {"items": [item("a@example.com", lookup="MASTER.MAIL")]},
    ],
)
def test_send_is_400_and_sends_nothing_when_the_body_is_malformed(
    sandbox: SmcSandbox, http: requests.Session, body: Any
) -> None:
    url = f"{org_url(sandbox)}/journeys/transactional/{JOURNEY}/send"
    response = http.post(url, json=body, timeout=5)
    assert (response.status_code, response.json()["result_code"]) == (400, "ValidationFailed")
    assert sandbox.messages("demo", JOURNEY) == []


def test_send_is_404_in_the_send_answer_shape_when_the_journey_is_unknown(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    response = send(http, sandbox, [item("a@example.com")], journey="nope")
    assert response.status_code == 404
    body = response.json()
    assert (body["result_code"], body["response_data"], body["messages"]) == ("NotFound", [], [])
    assert body["errors"][0]["error_code"] == "ERR_NOT_FOUND"


def test_send_is_logged_with_its_item_count_when_made(sandbox: SmcSandbox, http: requests.Session) -> None:
    send(http, sandbox, [item("a@example.com"), item("b@example.com")])
    entry = sandbox.requests_log[-1]
    assert (entry.method, entry.path, entry.rows, entry.status) == (
        "POST",
        f"/Portal/Api/organizations/demo/journeys/transactional/{JOURNEY}/send",
        2,
        200,
    )


# -- faults ---------------------------------------------------------------------------------------
def test_send_is_applied_but_unanswered_when_the_connection_drops_after_processing(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(drop_connection=True, after_processing=True, path_contains="/send"))
    with pytest.raises(requests.ConnectionError):
        send(http, sandbox, [item("a@example.com")])
    # The message went out although the client never heard so
    assert [m["recipient"] for m in sandbox.messages("demo", JOURNEY)] == ["a@example.com"]
    assert sandbox.requests_log[-1].status is None


def test_send_sends_nothing_when_a_status_or_drop_fault_strikes_first(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(status=503, retry_after="2", path_contains="/send"))
    refused = send(http, sandbox, [item("a@example.com")])
    assert (refused.status_code, refused.headers["Retry-After"]) == (503, "2")
    assert refused.json()["result_code"] == "ServiceUnavailable"
    sandbox.inject(Fault(drop_connection=True, path_contains="/send"))
    with pytest.raises(requests.ConnectionError):
        send(http, sandbox, [item("a@example.com")])
    assert sandbox.messages("demo", JOURNEY) == []


def test_send_is_answered_and_sent_when_a_delay_fault_slows_it(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(delay_s=0.2, path_contains="/send"))
    assert send(http, sandbox, [item("a@example.com")]).json()["result_code"] == "Succeeded"
    assert len(sandbox.messages("demo", JOURNEY)) == 1
    assert sandbox.requests_log[-1].fault


def test_send_answers_the_injected_result_code_per_item_when_a_fault_sets_one(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(result_code="PartiallySucceeded", invalid_rows=[1], path_contains="/send"))
    body = send(http, sandbox, [item("a@example.com"), item("b@example.com", data={"x": 1})]).json()
    assert body["result_code"] == "PartiallySucceeded" and body["messages"] == []
    assert [(a["recipient"], a["result_code"]) for a in body["response_data"]] == [
        ("a@example.com", "PartiallySucceeded"),
        ("b@example.com", "Failed"),
    ]
    assert body["response_data"][1]["data"] == {"x": 1}
    assert sandbox.messages("demo", JOURNEY) == []  # a 200 that is no proof


def test_admin_api_seeds_journeys_and_shows_their_messages_when_asked(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    admin = f"{sandbox.base_url}/_sandbox"
    seed = {"journeys": [{"org": "demo", "api_name": "welcome", "name": "Welcome", "list": "users"}]}
    assert requests.post(f"{admin}/seed", json=seed, timeout=5).status_code == 200
    assert requests.post(f"{admin}/seed", json=seed, timeout=5).status_code == 400  # it exists
    bad_list = {"journeys": [{"org": "demo", "api_name": "x", "list": "nope"}]}
    assert requests.post(f"{admin}/seed", json=bad_list, timeout=5).status_code == 404
    send(http, sandbox, [item("new@example.com", "en", data={"plan": "pro"})], journey="welcome")
    messages = requests.get(f"{admin}/organizations/demo/journeys/welcome/messages", timeout=5).json()
    (message,) = messages["messages"]
    assert {k: message[k] for k in ("journey", "recipient", "language", "data", "profile_id")} == {
        "journey": "welcome",
        "recipient": "new@example.com",
        "language": "en",
        "data": {"plan": "pro"},
        "profile_id": None,
    }
    assert requests.get(f"{admin}/organizations/demo/journeys/nope/messages", timeout=5).status_code == 404
    assert requests.post(f"{admin}/reset", json={"seed": "default"}, timeout=5).status_code == 200
    assert sandbox.messages("demo", JOURNEY) == []
    with pytest.raises(SmcError, match="welcome"):
        sandbox.messages("demo", "welcome")
