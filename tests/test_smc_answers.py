"""Reading SMC's load/delete answers: only proof counts as delivered (unit tests, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from handler import utf16
from handler.errors import SmcRefusedError, SmcTargetNotFoundError
from handler.operations import Target
from handler.smc.answers import read_answer

LOAD = Target("load", "segment_events", ("MESSAGE_ID",), ("MESSAGE_ID", "EVENT_NAME", "CONTEXT"))
DELETE = Target("delete", "segment_events", ("USER_ID",), ("USER_ID",))
REMOVE = Target("delete", "users", ("CUSTOMER_ID",), ("CUSTOMER_ID",), segment="vip")
ONLY_UPDATE = Target("load", "users", ("CUSTOMER_ID",), ("CUSTOMER_ID", "MAIL"), import_option="OnlyUpdate")


def answer(code: str, **counters: int) -> dict[str, Any]:
    body: dict[str, Any] = {"result_code": code, "invalid_records": counters.pop("invalid", [])}
    body.update({f"number_of_{name}": value for name, value in counters.items()})
    return body


def invalid(*rows: int) -> list[dict[str, Any]]:
    return [{"record_index": r, "field_name": "EVENT_NAME", "validation_code": "InvalidType"} for r in rows]


def test_succeeded_without_counters_is_proof_for_every_row():
    verdicts = read_answer(LOAD, 3, 200, {"result_code": "Succeeded"})
    assert verdicts.delivered() == [0, 1, 2] and not verdicts.unconfirmed


def test_succeeded_with_counters_that_account_for_every_row_is_proof():
    verdicts = read_answer(LOAD, 3, 200, answer("Succeeded", inserted_records=2, updated_records=1))
    assert verdicts.delivered() == [0, 1, 2]


def test_succeeded_whose_counters_fall_short_leaves_every_row_unconfirmed():
    verdicts = read_answer(LOAD, 3, 200, answer("Succeeded", inserted_records=2, updated_records=0))
    assert verdicts.delivered() == [] and verdicts.unconfirmed == [0, 1, 2] and verdicts.resend


def test_partial_success_rejects_named_rows_and_delivers_the_rest_the_counters_account_for():
    body = answer("PartiallySucceeded", inserted_records=2, failed_records=1, invalid=invalid(1))
    verdicts = read_answer(LOAD, 3, 200, body)
    assert verdicts.rejected == {1: "SMC InvalidType on EVENT_NAME"}
    assert verdicts.delivered() == [0, 2] and not verdicts.unconfirmed


def test_failed_naming_one_row_with_nothing_loaded_leaves_the_others_unconfirmed():
    body = answer("Failed", inserted_records=0, failed_records=2, invalid=invalid(0))
    verdicts = read_answer(LOAD, 2, 200, body)
    assert verdicts.rejected.keys() == {0} and verdicts.unconfirmed == [1] and verdicts.resend


def test_failures_the_answer_does_not_attribute_leave_every_unnamed_row_unconfirmed():
    body = answer("PartiallySucceeded", inserted_records=1, failed_records=2, invalid=invalid(0))
    verdicts = read_answer(LOAD, 3, 200, body)
    assert verdicts.rejected.keys() == {0} and verdicts.unconfirmed == [1, 2]


def test_counters_totalling_more_than_the_rows_sent_reject_nothing():
    body = answer("PartiallySucceeded", inserted_records=2, failed_records=2, invalid=invalid(0))
    verdicts = read_answer(LOAD, 3, 200, body)
    assert not verdicts.rejected and verdicts.unconfirmed == [0, 1, 2] and verdicts.resend


def test_400_naming_rows_loads_nothing_so_the_innocent_rows_are_to_be_sent_again():
    verdicts = read_answer(LOAD, 3, 400, answer("ValidationFailed", invalid=invalid(2)))
    assert verdicts.rejected.keys() == {2} and verdicts.unconfirmed == [0, 1] and verdicts.resend


@pytest.mark.parametrize("code", ["Failed", "ValidationFailed"])
def test_failure_of_the_whole_call_naming_no_row_is_refused_and_retryable(code):
    with pytest.raises(SmcRefusedError):
        read_answer(LOAD, 2, 200, answer(code, inserted_records=0))


@pytest.mark.parametrize(("status", "body"), [(404, {}), (200, {"result_code": "NotFound"})])
def test_missing_list_is_a_retryable_configuration_error(status, body):
    with pytest.raises(SmcTargetNotFoundError) as caught:
        read_answer(LOAD, 1, status, body)
    assert caught.value.missing == "load segment_events"


def test_user_deletion_whose_counters_say_nothing_was_found_is_done():
    assert read_answer(DELETE, 2, 200, answer("Succeeded", records_not_found=2)).delivered() == [0, 1]
    body = answer("Succeeded", deleted_records=1, records_not_found=1)
    assert read_answer(DELETE, 2, 200, body).delivered() == [0, 1]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {}),
        (
            404,
            {
                "result_code": "NotFound",
                "errors": [{"error_code": "ERR_NOT_FOUND", "description": "No such endpoint"}],
            },
        ),
        (200, {"result_code": "NotFound"}),
        (200, answer("NotFound", deleted_records=0, records_not_found=1)),  # 1 of 2 rows
    ],
)
def test_deletion_answered_404_or_not_found_without_counters_for_every_row_is_a_missing_list(status, body):
    with pytest.raises(SmcTargetNotFoundError) as caught:
        read_answer(DELETE, 2, status, body)
    assert caught.value.missing == "delete segment_events"


@pytest.mark.parametrize("status", [200, 404])
def test_deletion_whose_not_found_answer_counts_every_row_not_found_is_done(status):
    body = answer("NotFound", deleted_records=0, records_not_found=2)
    assert read_answer(DELETE, 2, status, body).delivered() == [0, 1]


def test_deletion_counting_records_instead_of_rows_is_unconfirmed_not_delivered():
    # SMC's counters count rows of the request; an answer claiming more cannot be read, and the
    # re-send (nothing left, so "not found" per row) is what proves the deletion.
    body = answer("Succeeded", deleted_records=7, records_not_found=0)
    verdicts = read_answer(DELETE, 2, 200, body)
    assert verdicts.delivered() == [] and verdicts.unconfirmed == [0, 1] and verdicts.resend


def test_audience_removal_from_a_segment_smc_says_does_not_exist_is_done():
    managed = Target(
        "delete", "users", ("CUSTOMER_ID",), ("CUSTOMER_ID",), segment="vip", absent_segment_is_done=True
    )
    segment_missing = {
        "result_code": "NotFound",
        "errors": [
            {"error_code": "ERR_NOT_FOUND", "description": "Static segment 'vip' not found on list 'users'"}
        ],
    }
    list_missing = {
        "result_code": "NotFound",
        "errors": [
            {"error_code": "ERR_NOT_FOUND", "description": "List 'users' not found in organization 'demo'"}
        ],
    }
    assert read_answer(managed, 1, 404, segment_missing).delivered() == [0]
    for body in (list_missing, {}):
        with pytest.raises(SmcTargetNotFoundError):
            read_answer(managed, 1, 404, body)
    with pytest.raises(SmcTargetNotFoundError):  # a segment the destination does not own
        read_answer(REMOVE, 1, 404, segment_missing)


def test_segment_removal_of_a_non_member_is_accounted_for():
    body = answer("Succeeded", deleted_records=1, records_not_found=1)
    assert read_answer(REMOVE, 2, 200, body).delivered() == [0, 1]


def test_only_update_of_an_unknown_profile_is_what_smc_was_asked_to_do():
    body = answer("Succeeded", inserted_records=0, updated_records=1, records_not_found=1)
    assert read_answer(ONLY_UPDATE, 2, 200, body).delivered() == [0, 1]
    assert read_answer(LOAD, 2, 200, body).unconfirmed == [0, 1]  # elsewhere it is no proof


def test_validation_error_naming_a_column_of_the_request_is_a_missing_column():
    body = {
        "result_code": "ValidationFailed",
        "errors": [{"error_code": "ERR_VALIDATION", "description": "Field 'CONTEXT' does not exist on list"}],
    }
    with pytest.raises(SmcTargetNotFoundError) as caught:
        read_answer(LOAD, 1, 400, body)
    assert caught.value.missing == "column CONTEXT on list segment_events"


def test_row_indexes_outside_the_request_and_booleans_are_ignored():
    records = [{"record_index": 5}, {"record_index": True}, {"record_index": -1}, "junk"]
    verdicts = read_answer(LOAD, 2, 200, answer("Succeeded", inserted_records=2, invalid=records))
    assert verdicts.delivered() == [0, 1] and not verdicts.rejected


@pytest.mark.parametrize(("text", "units"), [("abc", 3), ("é" * 3, 3), ("😀", 2), ("a😀b", 4), ("\ud83d", 1)])
def test_utf16_length_counts_code_units_as_dotnet_does(text, units):
    assert utf16.length(text) == units


def test_utf16_truncation_cuts_between_characters():
    assert utf16.truncate("ab😀c", 3) == "ab"
    assert utf16.truncate("ab😀c", 4) == "ab😀"
    assert utf16.truncate("x" * 10, 4) == "xxxx"
    assert utf16.truncate("short", 255) == "short"


# -- review of issue 10's fixes: only a consistent answer settles a row ------------------------------
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"result_code": "Failed", "number_of_inserted_records": 2}),
        (200, {"result_code": "ValidationFailed", "number_of_inserted_records": 2}),
        (200, {"result_code": "Garbage", "number_of_inserted_records": 2}),
        (200, {"number_of_inserted_records": 2}),
        (200, {"result_code": 7, "number_of_inserted_records": 2}),
        (400, {"result_code": "Succeeded", "number_of_inserted_records": 2}),
        (400, {"number_of_inserted_records": 2}),
    ],
)
def test_full_counters_under_a_failure_unknown_or_missing_code_deliver_nothing(status, body):
    try:
        verdicts = read_answer(LOAD, 2, status, body)
    except SmcRefusedError:
        return  # retried as a whole: fine
    assert verdicts.delivered() == [] and not verdicts.rejected and verdicts.resend


@pytest.mark.parametrize(
    "counters",
    [
        {"inserted_records": 100},
        {"inserted_records": 3, "updated_records": -1},
        {"inserted_records": 2, "failed_records": -5},
        {"inserted_records": 2, "updated_records": 1.0},
        {"inserted_records": 2, "updated_records": "0"},
        {"inserted_records": True, "updated_records": 1},
        {"duplicate_records": 2},
        {"inserted_records": 1, "updated_records": 1, "deleted_records": 1},
        {"inserted_records": 3},
    ],
)
def test_counters_that_do_not_add_up_exactly_to_the_rows_sent_prove_nothing(counters):
    verdicts = read_answer(LOAD, 2, 200, answer("Succeeded", **counters))
    assert verdicts.delivered() == [] and verdicts.unconfirmed == [0, 1] and verdicts.resend


def test_a_duplicate_beside_a_row_smc_applied_is_accounted_for():
    body = answer("Succeeded", inserted_records=1, duplicate_records=1)
    assert read_answer(LOAD, 2, 200, body).delivered() == [0, 1]


@pytest.mark.parametrize(
    ("rows", "body"),
    [
        (2, answer("Succeeded", inserted_records=2, invalid=invalid(0))),
        (
            2,
            answer(
                "PartiallySucceeded",
                inserted_records=1,
                updated_records=1,
                failed_records=0,
                invalid=invalid(0),
            ),
        ),
        (1, answer("Failed", failed_records=2, invalid=invalid(0))),
        (2, answer("Garbage", failed_records=1, invalid=invalid(0))),
        (2, {"invalid_records": invalid(0)}),
    ],
)
def test_rows_named_by_a_contradictory_answer_are_unconfirmed_never_rejected(rows, body):
    verdicts = read_answer(LOAD, rows, 200, body)
    assert not verdicts.rejected and verdicts.unconfirmed == list(range(rows)) and verdicts.resend


def test_a_400_naming_rows_never_vouches_for_the_others_whatever_its_counters():
    body = answer("ValidationFailed", inserted_records=1, invalid=invalid(0))
    verdicts = read_answer(LOAD, 2, 400, body)
    assert verdicts.rejected.keys() == {0} and verdicts.unconfirmed == [1]
