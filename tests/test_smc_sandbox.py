"""The SMC sandbox follows SMC's v1 contract over real HTTP; one test per contract rule and fault kind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox import Fault, SmcSandbox
from tests.sandbox_http import API_KEY, event, load, load_users, org_url

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- health and auth ------------------------------------------------------------------------------
def test_status_answers_ok_without_auth(sandbox: SmcSandbox) -> None:
    response = requests.get(f"{sandbox.api_url}/status", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}
    assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("headers", [{}, {"X-ApiKey": "demo-key:wrong"}, {"X-ApiKey": "demo-key"}])
def test_request_without_valid_api_key_is_401(sandbox: SmcSandbox, headers: dict[str, str]) -> None:
    response = requests.get(f"{org_url(sandbox)}/lists", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["errors"][0]["error_code"] == "ERR_AUTHENTICATION"


def test_separate_secret_header_is_accepted(sandbox: SmcSandbox) -> None:
    headers = {"X-ApiKey": "demo-key", "X-ApiKey-Secret": "demo-secret"}
    assert requests.get(org_url(sandbox), headers=headers, timeout=5).status_code == 200


def test_rotated_service_account_replaces_the_old_one(sandbox: SmcSandbox, http: requests.Session) -> None:
    sandbox.add_service_account("new-key", "new-secret")
    sandbox.remove_service_account("demo-key")
    assert http.get(org_url(sandbox), timeout=5).status_code == 401
    new = {"X-ApiKey": "new-key:new-secret"}
    assert requests.get(org_url(sandbox), headers=new, timeout=5).status_code == 200


# -- structure endpoints ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/organizations/nope",
        "/organizations/nope/lists",
        "/organizations/demo/lists/nope",
        "/organizations/demo/lists/nope/fields",
        "/organizations/demo/lists/users/segments/nope/data/load",
        "/organizations/demo/nonsense",
    ],
)
def test_unknown_organization_list_segment_or_path_is_404(
    sandbox: SmcSandbox, http: requests.Session, path: str
) -> None:
    method = "POST" if path.endswith("/load") else "GET"
    response = http.request(
        method, f"{sandbox.api_url}{path}", params={"keyFields": "ID"}, json=[["ID"]], timeout=5
    )
    assert response.status_code == 404
    assert response.json()["result_code"] == "NotFound"


def test_load_into_dynamic_segment_is_404(sandbox: SmcSandbox, http: requests.Session) -> None:
    sandbox.add_segment("demo", "users", "active", "Dynamic")
    response = load(http, sandbox, [[1]], list_name="users", segment="active", keyFields="ID", fields="ID")
    assert response.status_code == 404


def test_list_details_fields_and_segments_follow_the_contract(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    lists = http.get(f"{org_url(sandbox)}/lists", timeout=5).json()["lists"]
    assert {(lst["api_name"], lst["type"]) for lst in lists} == {
        ("segment_events", "Datalist"),
        ("users", "Userlist"),
    }
    details = http.get(f"{org_url(sandbox)}/lists/users", timeout=5).json()
    assert (details["api_name"], details["type"]) == ("users", "Userlist")
    fields = http.get(f"{org_url(sandbox)}/lists/segment_events/fields", timeout=5).json()["fields"]
    message_id = next(f for f in fields if f["name"] == "MESSAGE_ID")
    assert message_id == {
        "name": "MESSAGE_ID",
        "data_type": "Text",
        "length": 100,
        "allow_null": False,
        "description": None,
        "content": "Free",
    }
    segments = http.get(f"{org_url(sandbox)}/lists/users/segments", timeout=5).json()["segments"]
    assert segments == [{"api_name": "vip", "name": "VIP", "segment_type": "Static"}]


def test_segments_come_one_page_at_a_time_when_a_list_has_many(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    for n in range(45):
        sandbox.add_segment("demo", "users", f"seg_{n:02d}", "Static")
    url = f"{org_url(sandbox)}/lists/users/segments"
    names = ["vip", *(f"seg_{n:02d}" for n in range(45))]

    def page(**query: str) -> list[str]:
        response = http.get(url, params=query, timeout=5)
        assert response.status_code == 200, response.text
        return [s["api_name"] for s in response.json()["segments"]]

    # Without take SMC answers its first page only; skip/take select any page, the last one short
    assert page() == names[:20]
    assert page(skip="40", take="10") == names[40:]
    assert page(Skip="1", TAKE="2") == names[1:3]  # ASP.NET query names are case-insensitive
    assert page(skip="100", take="10") == []
    for bad in ({"skip": "-1"}, {"take": "many"}):
        assert http.get(url, params=bad, timeout=5).json()["result_code"] == "ValidationFailed"


def test_create_list_and_fields_then_duplicates_are_400(sandbox: SmcSandbox, http: requests.Session) -> None:
    lists_url = f"{org_url(sandbox)}/lists"
    spec = {"api_name": "orders", "name": "Orders", "type": "Datalist"}
    assert http.post(lists_url, json=spec, timeout=5).status_code == 200
    assert http.post(lists_url, json=spec, timeout=5).json()["result_code"] == "ValidationFailed"
    fields = {"fields": [{"name": "ORDER_ID", "data_type": "Text", "length": 50, "allow_null": False}]}
    assert http.post(f"{lists_url}/orders/fields", json=fields, timeout=5).status_code == 201
    assert http.post(f"{lists_url}/orders/fields", json=fields, timeout=5).status_code == 400
    bad_type = {"fields": [{"name": "X", "data_type": "Blob"}]}
    assert http.post(f"{lists_url}/orders/fields", json=bad_type, timeout=5).status_code == 400
    assert [f["name"] for f in sandbox.state.fields("demo", "orders")] == ["ORDER_ID"]


def test_default_seed_has_the_profile_columns_and_four_languages_when_seeded(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    fields = http.get(f"{org_url(sandbox)}/lists/users/fields", timeout=5).json()["fields"]
    assert [(f["name"], f["data_type"], f["length"]) for f in fields] == [
        ("ID", "Long", None),
        ("MAIL", "Text", 255),
        ("CUSTOMER_ID", "Text", 255),
        ("FIRSTNAME", "Text", 100),
        ("CITY", "Text", 100),
        ("LOCALE", "Text", 35),
    ]
    organization = http.get(org_url(sandbox), timeout=5).json()
    assert [language["code"] for language in organization["languages"]] == ["EN", "FR", "DE", "NL"]
    assert organization["default_languages"] == ["English"]


# -- static segment creation ----------------------------------------------------------------------
def create_segment(http: requests.Session, sb: SmcSandbox, body: Any, list_name: str = "users") -> Any:
    return http.post(f"{org_url(sb)}/lists/{list_name}/segments/static", json=body, timeout=5)


def test_segment_creation_makes_a_static_segment_that_takes_members_when_the_name_is_new(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    body = {"api_name": "order_completers", "name": "Order completers", "description": "Engage", "tags": []}
    response = create_segment(http, sandbox, body)
    assert (response.status_code, response.json()["result_code"]) == (200, "Succeeded")
    segments = http.get(f"{org_url(sandbox)}/lists/users/segments", timeout=5).json()["segments"]
    assert segments[-1] == {
        "api_name": "order_completers",
        "name": "Order completers",
        "segment_type": "Static",
    }
    details = http.get(f"{org_url(sandbox)}/lists/users/segments/ORDER_COMPLETERS", timeout=5).json()
    assert details == {
        "type": "Static",
        "api_name": "order_completers",
        "name": "Order completers",
        "description": "Engage",
    }
    # api names are case-insensitive: a load into ORDER_COMPLETERS fills the new segment
    load(http, sandbox, [[7]], list_name="users", segment="ORDER_COMPLETERS", keyFields="ID", fields="ID")
    assert [m["ID"] for m in sandbox.segment_members("demo", "users", "order_completers")] == [7]


@pytest.mark.parametrize("api_name", ["vip", "VIP"])
def test_segment_creation_is_400_failed_already_exists_when_the_api_name_is_taken(
    sandbox: SmcSandbox, http: requests.Session, api_name: str
) -> None:
    response = create_segment(http, sandbox, {"api_name": api_name, "name": "Again"})
    assert response.status_code == 400
    body = response.json()
    assert (body["result_code"], body["message"]) == ("Failed", "Request Failed")
    (error,) = body["errors"]
    assert error["error_code"] == "ERR_ALREADY_EXISTS" and "already exists" in error["description"]
    assert [s["name"] for s in sandbox.state.segments("demo", "users")] == ["VIP"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "No api name"},
        {"api_name": "no_name"},
        {"api_name": "has-dash", "name": "x"},
        {"api_name": "1st", "name": "x"},
        {"api_name": "ok", "name": "x", "tags": "one"},
        {"api_name": "ok", "name": "x", "description": 5},
        ["api_name", "name"],
    ],
)
def test_segment_creation_is_400_failed_when_the_body_is_invalid(
    sandbox: SmcSandbox, http: requests.Session, body: Any
) -> None:
    response = create_segment(http, sandbox, body)
    assert response.status_code == 400
    assert response.json()["result_code"] == "Failed"
    assert response.json()["errors"][0]["error_code"] == "ERR_VALIDATION"
    assert len(sandbox.state.segments("demo", "users")) == 1


def test_segment_creation_is_404_when_the_list_is_unknown(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    response = create_segment(http, sandbox, {"api_name": "x", "name": "x"}, list_name="nope")
    assert (response.status_code, response.json()["result_code"]) == (404, "NotFound")
    other_method = http.put(f"{org_url(sandbox)}/lists/users/segments/static", json={}, timeout=5)
    assert other_method.status_code == 405


def test_segment_creation_is_applied_when_a_fault_loses_the_answer(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(drop_connection=True, after_processing=True, path_contains="/segments/static"))
    with pytest.raises(requests.ConnectionError):
        create_segment(http, sandbox, {"api_name": "gold", "name": "Gold"})
    retried = create_segment(http, sandbox, {"api_name": "gold", "name": "Gold"})
    assert retried.json()["errors"][0]["error_code"] == "ERR_ALREADY_EXISTS"
    sandbox.inject(Fault(result_code="Succeeded", path_contains="/segments/static"))
    lying = create_segment(http, sandbox, {"api_name": "silver", "name": "Silver"}).json()
    assert lying == {"result_code": "Succeeded", "message": "Injected.", "errors": None}
    assert [s["api_name"] for s in sandbox.state.segments("demo", "users")] == ["vip", "gold"]


# -- load: request-level validation ---------------------------------------------------------------
def test_load_without_key_fields_is_400(sandbox: SmcSandbox, http: requests.Session) -> None:
    response = load(http, sandbox, [event("m1")], keyFields="")
    assert response.status_code == 400
    assert response.json()["result_code"] == "ValidationFailed"
    assert "keyFields" in response.json()["errors"][0]["description"]


def test_load_with_unknown_field_is_400_naming_the_field(sandbox: SmcSandbox, http: requests.Session) -> None:
    response = load(http, sandbox, [["m1", "x"]], fields="MESSAGE_ID,SHOE_SIZE")
    assert response.status_code == 400
    assert "SHOE_SIZE" in response.json()["errors"][0]["description"]


def test_load_with_key_field_outside_fields_is_400(sandbox: SmcSandbox, http: requests.Session) -> None:
    response = load(http, sandbox, [["u1"]], fields="USER_ID")
    assert response.status_code == 400
    assert "MESSAGE_ID" in response.json()["errors"][0]["description"]


@pytest.mark.parametrize("body", [b'{"rows": []}', b"[1, 2]", b"[[1], {}]", b"not json"])
def test_load_body_not_an_array_of_arrays_is_400(
    sandbox: SmcSandbox, http: requests.Session, body: bytes
) -> None:
    response = http.post(
        f"{org_url(sandbox)}/lists/segment_events/data/load",
        data=body,
        params={"keyFields": "MESSAGE_ID", "fields": "MESSAGE_ID"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["result_code"] == "ValidationFailed"


# -- load: rows -----------------------------------------------------------------------------------
def test_load_upserts_rows_by_key_fields(sandbox: SmcSandbox, http: requests.Session) -> None:
    first = load(http, sandbox, [event("m1", "u1"), event("m2", "u1")]).json()
    second = load(http, sandbox, [event("m1", "u2")]).json()
    assert (first["result_code"], first["number_of_inserted_records"]) == ("Succeeded", 2)
    assert (second["number_of_inserted_records"], second["number_of_updated_records"]) == (0, 1)
    rows = sandbox.rows("demo", "segment_events")
    assert [(r["MESSAGE_ID"], r["USER_ID"]) for r in rows] == [("m1", "u2"), ("m2", "u1")]
    assert rows[0]["PROPERTIES"] is None  # columns not sent stay NULL


def test_load_reads_header_row_and_indexes_data_rows_from_zero(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    body = [["MESSAGE_ID", "EVENT_TYPE"], ["m1", "track"], ["m2", "x" * 21]]
    result = load(http, sandbox, body, fields="").json()
    assert result["result_code"] == "PartiallySucceeded"
    assert result["invalid_records"][0]["record_index"] == 1  # the header row is not counted
    assert [r["MESSAGE_ID"] for r in sandbox.rows("demo", "segment_events")] == ["m1"]


def test_load_reports_invalid_rows_with_record_index_and_applies_the_rest(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    rows = [
        event("ok1"),
        ["m-long", "x" * 21, "u1", None],
        ["m-short", "track"],
        ["m-date", "track", "u1", "yesterday"],
        [None, "track", "u1", None],
        event("ok2"),
    ]
    result = load(http, sandbox, rows).json()
    assert result["result_code"] == "PartiallySucceeded"
    assert (result["number_of_inserted_records"], result["number_of_failed_records"]) == (2, 4)
    found = [(r["record_index"], r["field_name"], r["validation_code"]) for r in result["invalid_records"]]
    assert found == [
        (1, "EVENT_TYPE", "MaxStringLengthExceeded"),
        (2, None, "InvalidFieldCount"),
        (3, "EVENT_TIMESTAMP", "InvalidType"),
        (4, "MESSAGE_ID", "InvalidType"),
    ]
    assert {r["MESSAGE_ID"] for r in sandbox.rows("demo", "segment_events")} == {"ok1", "ok2"}


@pytest.mark.parametrize(
    ("data_type", "good", "bad"),
    [
        ("Long", ["42", 42, 4.0], [4.5, "x", True]),
        ("Float", ["1.5", 2, 2.5], ["NaN", "x", False]),
        ("Boolean", [True, "false", "TRUE"], [1, "yes"]),
        ("Date", ["2024-05-01", "2024-05-01T10:00:00Z"], ["01/05/2024"]),
    ],
)
def test_load_checks_values_against_the_column_type(
    sandbox: SmcSandbox, http: requests.Session, data_type: str, good: list[Any], bad: list[Any]
) -> None:
    columns = [{"name": "K", "data_type": "Long"}, {"name": "V", "data_type": data_type}]
    sandbox.add_list("demo", "typed", columns)
    rows = [[i, value] for i, value in enumerate(good + bad)]
    result = load(http, sandbox, rows, list_name="typed", keyFields="K", fields="K,V").json()
    assert [r["record_index"] for r in result["invalid_records"]] == list(range(len(good), len(rows)))
    assert {r["validation_code"] for r in result["invalid_records"]} == {"InvalidType"}


def test_load_fails_with_200_when_every_row_is_invalid(sandbox: SmcSandbox, http: requests.Session) -> None:
    response = load(http, sandbox, [["m1"], ["m2"]])
    assert response.status_code == 200
    assert response.json()["result_code"] == "Failed"
    assert response.json()["number_of_failed_records"] == 2


@pytest.mark.parametrize(("deduplication", "winner"), [("ImportLastMatch", "u2"), ("ImportFirstMatch", "u1")])
def test_duplicate_keys_in_one_body_keep_one_row(
    sandbox: SmcSandbox, http: requests.Session, deduplication: str, winner: str
) -> None:
    result = load(http, sandbox, [event("m1", "u1"), event("m1", "u2")], deduplication=deduplication).json()
    assert (result["number_of_inserted_records"], result["number_of_duplicate_records"]) == (1, 1)
    assert [r["USER_ID"] for r in sandbox.rows("demo", "segment_events")] == [winner]


def test_only_update_counts_unknown_keys_as_not_found(sandbox: SmcSandbox, http: requests.Session) -> None:
    load(http, sandbox, [event("m1")])
    result = load(http, sandbox, [event("m1", "u9"), event("m2")], data_import_option="OnlyUpdate").json()
    assert (result["number_of_updated_records"], result["number_of_records_not_found"]) == (1, 1)
    assert len(sandbox.rows("demo", "segment_events")) == 1


# -- segments and deletes -------------------------------------------------------------------------
def test_segment_load_adds_membership_once(sandbox: SmcSandbox, http: requests.Session) -> None:
    for _ in range(2):
        response = load(http, sandbox, [[7]], list_name="users", segment="vip", keyFields="ID", fields="ID")
        assert response.json()["result_code"] == "Succeeded"
    assert [m["ID"] for m in sandbox.segment_members("demo", "users", "vip")] == [7]
    assert len(sandbox.rows("demo", "users")) == 1


def test_segment_delete_removes_membership_and_keeps_records(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    load_users(http, sandbox, 1, 2)
    load(http, sandbox, [[1], [2]], list_name="users", segment="vip", keyFields="ID", fields="ID")
    url = f"{org_url(sandbox)}/lists/users/segments/vip/data"
    result = http.delete(url, params={"keyFields": "ID", "fields": "ID"}, json=[[1], [3]], timeout=5).json()
    assert (result["number_of_deleted_records"], result["number_of_records_not_found"]) == (1, 1)
    assert [m["ID"] for m in sandbox.segment_members("demo", "users", "vip")] == [2]
    assert len(sandbox.rows("demo", "users")) == 2
    assert http.delete(f"{url}/clear", timeout=5).json()["result_code"] == "Succeeded"
    assert sandbox.segment_members("demo", "users", "vip") == []


def test_list_delete_by_user_id_removes_every_matching_row(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    load(http, sandbox, [event("m1", "u1"), event("m2", "u1"), event("m3", "u2")])
    url = f"{org_url(sandbox)}/lists/segment_events/data"
    body = [["USER_ID"], ["u1"], ["ghost"]]
    result = http.delete(url, params={"keyFields": "USER_ID"}, json=body, timeout=5).json()
    # counters count rows of the request (the Swagger's examples add up to the rows sent): the
    # row `u1` deleted two records and counts once
    assert (result["result_code"], result["number_of_deleted_records"]) == ("Succeeded", 1)
    assert result["number_of_records_not_found"] == 1
    assert [r["MESSAGE_ID"] for r in sandbox.rows("demo", "segment_events")] == ["m3"]


def test_list_delete_drops_segment_memberships(sandbox: SmcSandbox, http: requests.Session) -> None:
    load(http, sandbox, [[5]], list_name="users", segment="vip", keyFields="ID", fields="ID")
    url = f"{org_url(sandbox)}/lists/users/data"
    http.delete(url, params={"keyFields": "ID", "fields": "ID"}, json=[[5]], timeout=5)
    assert sandbox.segment_members("demo", "users", "vip") == []


def test_load_counters_add_up_to_the_rows_sent_when_a_key_matches_several_records(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    load(http, sandbox, [event("m1", "u1"), event("m2", "u1")])
    body = [["USER_ID", "EVENT_TYPE"], ["u1", "page"]]
    url = f"{org_url(sandbox)}/lists/segment_events/data/load"
    result = http.post(url, params={"keyFields": "USER_ID"}, json=body, timeout=5).json()
    assert (result["number_of_updated_records"], result["number_of_inserted_records"]) == (1, 0)
    assert [r["EVENT_TYPE"] for r in sandbox.rows("demo", "segment_events")] == ["page", "page"]


def test_delete_from_a_missing_list_is_404_naming_the_list_and_missing_records_are_counted(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    missing = http.delete(
        f"{org_url(sandbox)}/lists/nope/data",
        params={"keyFields": "USER_ID"},
        json=[["USER_ID"], ["u1"]],
        timeout=5,
    )
    assert (missing.status_code, missing.json()["result_code"]) == (404, "NotFound")
    assert "List 'nope' not found" in missing.json()["errors"][0]["description"]
    url = f"{org_url(sandbox)}/lists/segment_events/data"
    found = http.delete(url, params={"keyFields": "USER_ID"}, json=[["USER_ID"], ["u1"]], timeout=5)
    assert found.status_code == 200
    assert (found.json()["result_code"], found.json()["number_of_records_not_found"]) == ("Succeeded", 1)


# -- faults ---------------------------------------------------------------------------------------
def test_result_code_fault_answers_the_counters_it_is_given_and_applies_nothing(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    counters = {"inserted_records": 100, "updated_records": -1}
    sandbox.inject(Fault(result_code="Succeeded", counters=counters, invalid_rows=[0]))
    result = load(http, sandbox, [event("m1"), event("m2")]).json()
    assert (result["number_of_inserted_records"], result["number_of_updated_records"]) == (100, -1)
    assert [record["record_index"] for record in result["invalid_records"]] == [0]
    assert sandbox.rows("demo", "segment_events") == []
    with pytest.raises(ValueError, match="unknown counters"):
        Fault(result_code="Succeeded", counters={"rows": 1})


def test_status_fault_answers_with_retry_after_then_recovers(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(status=429, retry_after="3", path_contains="/data/load"))
    limited = load(http, sandbox, [event("m1")])
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json()["result_code"] == "Failed"
    assert sandbox.rows("demo", "segment_events") == []  # nothing applied
    assert load(http, sandbox, [event("m1")]).status_code == 200  # times=1 used up


def test_fault_filters_by_method_and_lasts_until_cleared(sandbox: SmcSandbox, http: requests.Session) -> None:
    sandbox.inject(Fault(status=503, method="POST", times=-1))
    assert http.get(org_url(sandbox), timeout=5).status_code == 200
    assert [load(http, sandbox, [event("m1")]).status_code for _ in range(3)] == [503, 503, 503]
    sandbox.clear_faults()
    assert load(http, sandbox, [event("m1")]).status_code == 200


def test_delay_fault_makes_the_client_time_out(sandbox: SmcSandbox, http: requests.Session) -> None:
    sandbox.inject(Fault(delay_s=0.5))
    with pytest.raises(requests.Timeout):
        http.get(org_url(sandbox), timeout=0.2)


def test_global_latency_slows_every_request(sandbox: SmcSandbox, http: requests.Session) -> None:
    sandbox.latency_s = 0.2
    started = time.perf_counter()
    assert http.get(org_url(sandbox), timeout=5).status_code == 200
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize("send_headers", [False, True])
def test_dropped_connection_gives_the_client_no_answer(
    sandbox: SmcSandbox, http: requests.Session, send_headers: bool
) -> None:
    sandbox.inject(Fault(drop_connection=True, send_headers=send_headers))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        load(http, sandbox, [event("m1")])
    assert sandbox.rows("demo", "segment_events") == []
    assert sandbox.requests_log[-1].status is None
    assert load(http, sandbox, [event("m1")]).status_code == 200  # the next connection works


def test_after_processing_fault_applies_the_load_then_fails(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    sandbox.inject(Fault(status=502, after_processing=True))
    assert load(http, sandbox, [event("m1")]).status_code == 502
    sandbox.inject(Fault(drop_connection=True, after_processing=True))
    with pytest.raises(requests.ConnectionError):
        load(http, sandbox, [event("m2")])
    assert [r["MESSAGE_ID"] for r in sandbox.rows("demo", "segment_events")] == ["m1", "m2"]
    assert len(sandbox.requests_log) == 2  # no silent client-side resend


def test_stopped_sandbox_refuses_connections_and_restarts_on_the_same_port(
    sandbox: SmcSandbox, http: requests.Session
) -> None:
    load(http, sandbox, [event("m1")])
    base_url = sandbox.base_url
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(org_url(sandbox), timeout=2)
    sandbox.start()
    assert sandbox.base_url == base_url
    assert len(sandbox.rows("demo", "segment_events")) == 1  # state survives a restart
    assert http.get(org_url(sandbox), timeout=5).status_code == 200


# -- request log and admin API ----------------------------------------------------------------------
def test_request_log_records_calls_without_the_api_key(sandbox: SmcSandbox, http: requests.Session) -> None:
    load(http, sandbox, [event("m1"), event("m2")])
    entry = sandbox.requests_log[-1]
    assert (entry.method, entry.path, entry.rows, entry.status) == (
        "POST",
        "/Portal/Api/organizations/demo/lists/segment_events/data/load",
        2,
        200,
    )
    assert entry.query["keyFields"] == "MESSAGE_ID"
    assert "demo-secret" not in repr(sandbox.requests_log)


def test_admin_api_seeds_inspects_injects_and_resets(sandbox: SmcSandbox, http: requests.Session) -> None:
    admin = f"{sandbox.base_url}/_sandbox"
    assert requests.post(f"{admin}/reset", json={"seed": "default"}, timeout=5).status_code == 200
    seed = {
        "organizations": ["acme"],
        "service_accounts": [{"key": "k", "secret": "s"}],
        "lists": [
            {
                "org": "acme",
                "api_name": "people",
                "type": "Userlist",
                "fields": [{"name": "ID", "data_type": "Long"}],
            }
        ],
        "segments": [{"org": "acme", "list": "people", "api_name": "fans"}],
    }
    assert requests.post(f"{admin}/seed", json=seed, timeout=5).status_code == 200
    acme = {"X-ApiKey": "k:s"}
    requests.post(
        f"{org_url(sandbox, 'acme')}/lists/people/segments/fans/data/load",
        headers=acme,
        params={"keyFields": "ID", "fields": "ID"},
        json=[[1]],
        timeout=5,
    )
    rows = requests.get(f"{admin}/organizations/acme/lists/people/rows", timeout=5).json()
    assert rows == {"rows": [{"ID": 1}]}
    members = requests.get(f"{admin}/organizations/acme/lists/people/segments/fans/members", timeout=5).json()
    assert members == {"members": [{"ID": 1}]}
    log = requests.get(f"{admin}/requests", timeout=5).json()["requests"]
    assert [(r["method"], r["rows"], r["status"]) for r in log] == [("POST", 1, 200)]
    fault = {"status": 503, "retry_after": "1"}
    assert requests.post(f"{admin}/faults", json=fault, timeout=5).status_code == 201
    assert http.get(org_url(sandbox), timeout=5).status_code == 503
    assert requests.post(f"{admin}/faults", json={"colour": "red"}, timeout=5).status_code == 400
    assert requests.get(f"{admin}/organizations/acme/lists/nope/rows", timeout=5).status_code == 404
    assert requests.post(f"{admin}/reset", timeout=5).status_code == 200
    assert http.get(org_url(sandbox), timeout=5).status_code == 401  # accounts are gone too


def test_module_runs_standalone_with_default_seed() -> None:
    command = [sys.executable, "-m", "sandbox", "--port", "0", "--seed", "default"]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            base_url = banner.split("SMC_ADMIN_URL=")[1].split()[0]
            response = requests.get(
                f"{base_url}/Portal/Api/organizations/demo/lists/users", headers=API_KEY, timeout=5
            )
            assert response.json()["type"] == "Userlist"
        finally:
            process.terminate()
            process.wait(timeout=5)
    assert process.returncode == 0
