"""Delivery truth: an event is `delivered` only when SMC's answer proves SMC holds it, and nothing
a user could deliver is dropped. Each test is one finding of the independent review (issue 10's
table), end to end over real HTTP: the real lambda_handler, moto for AWS, the SMC sandbox."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from handler.cli import main as cli
from sandbox import Fault
from tests import support
from tests.conftest import CAPTURED_LOG_LINES
from tests.support import api_event, invoke, redelivered

ORG, EVENTS = support.ORG, support.EVENTS_LIST


def bearer(payload: Any) -> dict[str, Any]:
    return api_event(payload, signature=False, bearer=support.BEARER_TOKEN)


def rows_by_id(stack: Any) -> dict[str, dict[str, Any]]:
    return {row["MESSAGE_ID"]: row for row in stack.rows()}


def reasons(body: dict[str, Any]) -> list[str]:
    return [failure["reason"] for failure in body["failures"]]


# -- 1. a 200 that carries a failure result code -------------------------------------------------
@pytest.mark.parametrize(
    ("result_code", "reason"),
    [
        ("ServiceUnavailable", "smc_unavailable"),
        ("InternalServerError", "smc_unavailable"),
        ("ValidationFailed", "smc_refused"),
        ("NotFound", "smc_target_not_found"),
    ],
)
def test_200_carrying_a_failure_result_code_is_retried_never_delivered(stack, result_code, reason):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(result_code=result_code, times=-1, path_contains="/data/load"))
    status, body, _ = invoke(api_event(support.track()))
    assert status == 503, body
    assert (body["delivered"], body["retried"]) == (0, 1)
    assert reasons(body)[0].startswith(reason)
    assert stack.rows() == []


def test_transient_result_code_on_a_200_is_retried_within_the_request(stack):
    stack.sandbox.inject(Fault(result_code="ServiceUnavailable", times=1, path_contains="/data/load"))
    status, body, _ = invoke(api_event(support.track()))
    assert status == 200 and body["delivered"] == 1
    assert len(stack.rows()) == 1 and len(stack.smc_calls("/data/load")) == 2


# -- 2. counters that do not account for the rows SMC did not name --------------------------------
def test_failed_answer_naming_one_of_two_rows_delivers_the_other_only_once_smc_confirms_it(stack):
    named, innocent = support.track(), support.track()
    stack.sandbox.inject(Fault(result_code="Failed", invalid_rows=[0], times=1, path_contains="/data/load"))
    status, body, _ = invoke(bearer([named, innocent]))
    assert status == 200, body
    assert (body["delivered"], body["rejected"]) == (1, 1)
    assert body["failures"][0]["messageId"] == named["messageId"]
    assert set(rows_by_id(stack)) == {innocent["messageId"]}
    # the innocent row went again, alone, and that answer proved SMC holds it
    assert [call.rows for call in stack.smc_calls("/data/load")] == [2, 1]


def test_rows_smc_never_confirms_are_retried_not_delivered(stack):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(result_code="Failed", invalid_rows=[0], times=1, path_contains="/data/load"))
    # the re-send of the other row is answered "PartiallySucceeded" with counters of zero
    stack.sandbox.inject(Fault(result_code="PartiallySucceeded", times=-1, path_contains="/data/load"))
    status, body, _ = invoke(bearer([support.track(), support.track()]))
    assert status == 503, body
    assert (body["delivered"], body["rejected"], body["retried"]) == (0, 1, 1)
    assert any(reason.startswith("smc_unconfirmed") for reason in reasons(body))


def test_succeeded_whose_counters_fall_short_is_not_taken_at_its_word(stack):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(result_code="Succeeded", times=-1, path_contains="/data/load"))
    status, body, _ = invoke(bearer([support.track(), support.track()]))
    assert status == 503 and body["delivered"] == 0 and body["retried"] == 2


# -- 3. a 400 naming some rows: the innocent ones go again at once -------------------------------
def test_400_naming_one_row_resends_the_innocent_rows_in_the_same_request(stack):
    stack.sandbox.validation = "all_or_nothing"
    support.narrow_event_name(stack.sandbox)
    too_long, fine = support.track("x" * support.TOO_LONG_FOR_NARROW), support.track("Signed Up")
    status, body, _ = invoke(bearer([too_long, fine]))
    assert status == 200, body
    assert (body["delivered"], body["rejected"]) == (1, 1)
    (failure,) = body["failures"]
    assert failure["messageId"] == too_long["messageId"]
    assert "MaxStringLengthExceeded on EVENT_NAME" in failure["reason"]
    assert set(rows_by_id(stack)) == {fine["messageId"]}
    assert [call.status for call in stack.smc_calls("/data/load")] == [400, 200]


# -- 4. an operator's fixable mistake and transient statuses are retried ----------------------------
def test_events_list_missing_a_column_is_retried_and_named_not_rejected(stack, capsys):
    stack.sandbox.remove_field(ORG, EVENTS, "CONTEXT")
    seen = len(CAPTURED_LOG_LINES)
    request = api_event(support.track())
    status, body, _ = invoke(request)
    assert status == 503, body
    assert body["retried"] == 1 and body["rejected"] == 0
    assert reasons(body)[0].startswith("smc_target_not_found")
    assert "column CONTEXT on list segment_events" in reasons(body)[0]
    failed = [json.loads(line) for line in CAPTURED_LOG_LINES[seen:] if '"SMC call failed"' in line]
    assert failed and failed[0]["missing"] == "column CONTEXT on list segment_events"
    # the operator's check names the same column
    assert cli(["check"]) == 1
    assert "CONTEXT" in "\n".join(line for line in capsys.readouterr().out.splitlines() if "FAIL" in line)
    # once an admin adds it back, Segment's retry is delivered
    stack.sandbox.add_fields(ORG, EVENTS, [{"name": "CONTEXT", "data_type": "LongText", "length": 0}])
    status, body, _ = invoke(redelivered(request))
    assert status == 200 and body["delivered"] == 1


@pytest.mark.parametrize("status", [408, 409, 423, 425])
def test_transient_status_is_retried_within_the_request_then_answered_retryable(stack, status):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(status=status, times=1, path_contains="/data"))
    answer, body, _ = invoke(api_event(support.track()))
    assert answer == 200 and body["delivered"] == 1
    stack.sandbox.inject(Fault(status=status, times=-1, path_contains="/data"))
    answer, body, _ = invoke(api_event(support.track()))
    assert answer == 503 and body["retried"] == 1 and reasons(body)[0].startswith("smc_unavailable")


# -- 5. values longer than their column ------------------------------------------------------------
def test_track_name_longer_than_its_column_is_stored_truncated(stack):
    name = "Checkout step completed " + "x" * 300
    event = support.track(name)
    status, body, _ = invoke(api_event(event))
    assert status == 200 and body["delivered"] == 1, body
    assert rows_by_id(stack)[event["messageId"]]["EVENT_NAME"] == name[:255]


def test_truncation_counts_utf16_units_and_never_splits_an_emoji(stack):
    event = support.track("😀" * 200)  # 400 UTF-16 code units
    status, body, _ = invoke(api_event(event))
    assert status == 200 and body["delivered"] == 1, body
    assert rows_by_id(stack)[event["messageId"]]["EVENT_NAME"] == "😀" * 127  # 254 units


@pytest.mark.parametrize("user_id", ["u" * 256, "😀" * 128], ids=["ascii", "emoji"])
def test_identifier_over_its_column_is_rejected_naming_the_field_never_truncated(stack, user_id):
    status, body, _ = invoke(api_event(support.track(userId=user_id)))
    assert status == 400 and body["rejected"] == 1
    assert reasons(body) == ["userId is longer than its SMC column (255 UTF-16 code units)"]
    assert stack.smc_calls("/") == []


# -- 6. integrations: Segment routes; only an explicit false for this destination opts out ----------
@pytest.mark.parametrize(
    "integrations",
    [
        {"All": False, "Webhooks": True},
        {"All": False, "Selligent Marketing Cloud": {}},
        {"All": False, "Selligent Marketing Cloud": {"anything": 1}},
        {"All": False},
    ],
)
def test_event_segment_routed_here_is_delivered_whatever_all_says(stack, integrations):
    status, body, _ = invoke(api_event(support.track(integrations=integrations)))
    assert status == 200 and body["delivered"] == 1, body


def test_explicit_opt_out_of_this_destination_filters_the_event(stack):
    event = support.track(integrations={"All": True, "Selligent Marketing Cloud": False})
    status, body, _ = invoke(api_event(event))
    assert status == 200 and body["filtered"] == 1 and stack.smc_calls("/") == []


# -- 7. the batch envelope's context and integrations apply to every event --------------------------
def test_batch_envelope_context_applies_to_every_event_whose_own_keys_win(stack):
    bare = support.track()
    del bare["context"]
    own = support.track(context={"locale": "fr-FR"})
    envelope = {"batch": [bare, own], "context": {"ip": "198.51.100.9", "locale": "de-DE"}}
    status, body, _ = invoke(bearer(envelope))
    assert status == 200 and body["delivered"] == 2, body
    rows = rows_by_id(stack)
    assert json.loads(rows[bare["messageId"]]["CONTEXT"]) == {"ip": "198.51.100.9", "locale": "de-DE"}
    assert json.loads(rows[own["messageId"]]["CONTEXT"]) == {"ip": "198.51.100.9", "locale": "fr-FR"}


def test_batch_envelope_integrations_apply_to_every_event_whose_own_keys_win(stack):
    opted_out = support.track()
    opted_in = support.track(integrations={"Selligent Marketing Cloud": True})
    envelope = {"batch": [opted_out, opted_in], "integrations": {"Selligent Marketing Cloud": False}}
    status, body, _ = invoke(bearer(envelope))
    assert status == 200 and (body["filtered"], body["delivered"]) == (1, 1), body
    assert set(rows_by_id(stack)) == {opted_in["messageId"]}


# -- 8. and 9. the answer leaves in time, counted from arrival -----------------------------------------
def test_answer_deadline_counts_from_arrival_not_from_the_handler_start(stack):
    stack.sandbox.inject(Fault(delay_s=6.0, times=-1, path_contains="/data"))
    event = api_event(support.track())
    event["requestContext"]["timeEpoch"] -= 1500  # cold start: the request waited 1.5 s
    started = time.monotonic()
    status, body, _ = invoke(event)
    assert 1.5 + (time.monotonic() - started) < 5.0  # Segment waits 5 s from sending
    assert status == 503 and body["retried"] == 1


def test_slow_smc_and_a_hanging_final_idempotency_write_still_answer_in_time(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    proxy.only = "UpdateItem"  # Powertools' final write; the opening put goes through
    proxy.set_mode("hang")
    stack.sandbox.inject(Fault(delay_s=3.9, times=1, path_contains="/data"))
    event = support.track()
    started = time.monotonic()
    status, body, _ = invoke(api_event(event))
    assert time.monotonic() - started < 5.0
    assert status == 200 and body["delivered"] == 1, body
    assert set(rows_by_id(stack)) == {event["messageId"]}


# -- 10. and 11. every retry makes progress and redoes nothing SMC already took ---------------------
def test_two_hundred_segments_at_200_ms_each_complete_within_three_redeliveries(stack):
    segments = [f"launch_{i:03d}" for i in range(200)]
    for segment in segments:
        stack.sandbox.add_segment(ORG, "users", segment)
    events = [support.group("ADD", segment=segment) for segment in segments]
    stack.sandbox.latency_s = 0.2
    request = bearer(events)
    answers = [invoke(request)]
    while answers[-1][0] != 200 and len(answers) < 4:
        time.sleep(min(2.0, float(answers[-1][2].get("Retry-After", 0))))  # Segment backs off
        answers.append(invoke(redelivered(request)))
    status, body, _ = answers[-1]
    assert status == 200 and body["delivered"] == 200, [a[0] for a in answers]
    for segment, event in zip(segments, events, strict=True):
        assert [m["CUSTOMER_ID"] for m in stack.members(segment)] == [event["userId"]]
    # each redelivery sent only what was left, so the whole costs little more than one call each
    assert len(stack.smc_calls("/data")) <= 220


def test_redelivery_sends_only_the_event_smc_has_not_taken_until_it_can(stack):
    tracks = [support.track() for _ in range(5)]
    late = support.group("ADD", segment="launch_2027")
    request = bearer([*tracks, late])
    status, body, _ = invoke(request)
    assert status == 503 and (body["delivered"], body["retried"]) == (5, 1), body
    for _ in range(2):
        stack.sandbox.clear_requests_log()
        status, body, _ = invoke(redelivered(request))
        assert status == 503 and (body["delivered"], body["retried"]) == (5, 1), body
        assert [call.path.rsplit("/", 3)[-3] for call in stack.smc_calls("/data")] == ["launch_2027"]
    stack.sandbox.add_segment(ORG, "users", "launch_2027")
    stack.sandbox.clear_requests_log()
    status, body, _ = invoke(redelivered(request))
    assert status == 200 and body["delivered"] == 6, body
    assert len(stack.smc_calls("/data")) == 1
    assert set(rows_by_id(stack)) == {event["messageId"] for event in tracks}
    assert [m["CUSTOMER_ID"] for m in stack.members("launch_2027")] == [late["userId"]]


# -- the review of these fixes: an answer settles rows only when it is consistent -------------------
TWO_ROWS = {"number_of_inserted_records": 2}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"result_code": "Failed", **TWO_ROWS}),
        (200, {"result_code": "ValidationFailed", **TWO_ROWS}),
        (200, {"result_code": "Garbage", **TWO_ROWS}),
        (200, TWO_ROWS),
        (400, {"result_code": "Succeeded", **TWO_ROWS}),
        (400, TWO_ROWS),
    ],
    ids=[
        "200-Failed",
        "200-ValidationFailed",
        "200-unknown-code",
        "200-no-code",
        "400-Succeeded",
        "400-no-code",
    ],
)
def test_full_counters_beside_a_failure_unknown_or_missing_code_deliver_nothing(stack, status, body):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(status=status, body=body, times=-1, path_contains="/data/load"))
    answer, result, _ = invoke(bearer([support.track(), support.track()]))
    assert answer == 503, result
    assert (result["delivered"], result["rejected"], result["retried"]) == (0, 0, 2)
    assert stack.rows() == []


@pytest.mark.parametrize(
    "counters",
    [
        {"inserted_records": 100},
        {"inserted_records": 3, "updated_records": -1},
        {"inserted_records": 2, "failed_records": -5},
        {"duplicate_records": 2},
    ],
    ids=["more-than-sent", "negative-updated", "negative-failed", "duplicates-alone"],
)
def test_succeeded_whose_counters_do_not_add_up_exactly_is_resent_then_retried(stack, counters):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(
        Fault(result_code="Succeeded", counters=counters, times=-1, path_contains="/data/load")
    )
    answer, result, _ = invoke(bearer([support.track(), support.track()]))
    assert answer == 503 and (result["delivered"], result["retried"]) == (0, 2), result
    assert any(reason.startswith("smc_unconfirmed") for reason in reasons(result))
    assert [call.rows for call in stack.smc_calls("/data/load")] == [2, 2]  # sent once more, in-request
    assert stack.rows() == []


def test_impossible_counters_on_the_first_answer_are_settled_by_the_resend(stack):
    stack.sandbox.inject(
        Fault(result_code="Succeeded", counters={"inserted_records": 100}, path_contains="/data")
    )
    events = [support.track(), support.track()]
    answer, result, _ = invoke(bearer(events))
    assert answer == 200 and result["delivered"] == 2, result
    assert set(rows_by_id(stack)) == {event["messageId"] for event in events}


@pytest.mark.parametrize(
    ("result_code", "counters"),
    [
        ("Succeeded", {"inserted_records": 2}),
        ("PartiallySucceeded", {"inserted_records": 1, "updated_records": 1, "failed_records": 0}),
    ],
)
def test_row_named_by_an_answer_whose_counters_say_smc_took_it_is_resent_not_rejected(
    stack, result_code, counters
):
    named, other = support.track(), support.track()
    fault = Fault(result_code=result_code, counters=counters, invalid_rows=[0], path_contains="/data/load")
    stack.sandbox.inject(fault)
    answer, result, _ = invoke(bearer([named, other]))
    assert answer == 200 and (result["delivered"], result["rejected"]) == (2, 0), result
    assert set(rows_by_id(stack)) == {named["messageId"], other["messageId"]}


def test_resend_answered_with_impossible_failure_counters_is_retried_not_rejected(stack):
    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(result_code="Failed", invalid_rows=[0], times=1, path_contains="/data/load"))
    # the innocent row goes again alone; that answer claims 2 failures for 1 row and names it
    impossible = Fault(result_code="Failed", invalid_rows=[0], counters={"failed_records": 2}, times=-1)
    stack.sandbox.inject(impossible)
    named, innocent = support.track(), support.track()
    answer, result, _ = invoke(bearer([named, innocent]))
    assert answer == 503 and (result["delivered"], result["rejected"], result["retried"]) == (0, 1, 1), result
    retried = [failure for failure in result["failures"] if failure["messageId"] == innocent["messageId"]]
    assert retried[0]["reason"].startswith("smc_unconfirmed")


def test_ids_holding_nul_never_share_an_idempotency_key_with_the_ids_around_it(stack):
    joined = support.track(messageId="aX\u0000bX")
    assert invoke(api_event(joined))[:2][1]["delivered"] == 1
    apart = [support.track(messageId="aX"), support.track(messageId="bX")]
    answer, result, _ = invoke(bearer(apart))
    assert answer == 200 and result["delivered"] == 2, result
    assert set(rows_by_id(stack)) == {"aX\u0000bX", "aX", "bX"}


def test_request_keys_of_ids_without_nul_are_unchanged():
    import hashlib

    from handler.idempotency import request_key

    # the encoding before NUL was escaped: records stored under these keys stay valid
    legacy = hashlib.sha256(b"a\x00b\x00").hexdigest()
    assert request_key(["b", "a"]) == legacy
    assert request_key(["a\u0000b"]) != request_key(["a", "b"])
    assert request_key(["a\u0001", "b"]) != request_key(["a\u0001\u0001b"])


def user_rows(stack: Any, user_id: str) -> list[dict[str, Any]]:
    return [row for row in stack.rows() if row["USER_ID"] == user_id]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=404, method="DELETE", times=-1),
        Fault(result_code="NotFound", method="DELETE", times=-1),
        Fault(
            status=404,
            body={
                "result_code": "NotFound",
                "errors": [{"error_code": "ERR_NOT_FOUND", "description": "No such endpoint"}],
            },
            method="DELETE",
            times=-1,
        ),
    ],
    ids=["404", "200-NotFound", "no-such-endpoint"],
)
def test_user_deletion_answered_not_found_while_the_rows_exist_is_retried_not_done(stack, fault):
    track = support.track(userId="gone-1")
    assert invoke(api_event(track))[0] == 200
    stack.sandbox.inject(fault)
    answer, result, _ = invoke(api_event(support.delete(userId="gone-1")))
    assert answer == 503 and (result["delivered"], result["retried"]) == (0, 1), result
    assert reasons(result)[0].startswith("smc_target_not_found: SMC has no delete segment_events")
    assert len(user_rows(stack, "gone-1")) == 1


def test_user_deletion_of_a_user_smc_has_no_rows_for_is_done_by_its_counters(stack):
    answer, result, _ = invoke(api_event(support.delete(userId="never-seen")))
    assert answer == 200 and result["delivered"] == 1, result


def test_profile_deletion_from_a_profile_list_that_does_not_exist_is_retried_naming_it(stack):
    stack.set_env(SMC_PROFILE_LIST="no_such_users", SMC_PROFILE_KEY="CUSTOMER_ID")
    answer, result, _ = invoke(api_event(support.delete(userId="p-9")))
    assert answer == 503 and result["retried"] == 1, result
    assert "profile deletion: smc_target_not_found" in reasons(result)[0]
    assert "no_such_users" in reasons(result)[0]
