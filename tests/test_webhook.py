"""End to end through the real lambda_handler: moto (HTTP) for AWS, the SMC sandbox (HTTP) for SMC."""

from __future__ import annotations

import json

import pytest

from sandbox import Fault
from tests import support
from tests.support import api_event, invoke


def rows_by_id(stack):
    return {row["MESSAGE_ID"]: row for row in stack.rows()}


@pytest.mark.parametrize(
    "factory", [support.identify, support.track, support.page, support.screen, support.alias]
)
def test_single_signed_event_becomes_one_row_in_the_events_list(stack, factory):
    event = factory()
    status, body, _ = invoke(api_event(event))
    assert status == 200, body
    assert body["delivered"] == 1 and body["received"] == 1 and body["failures"] == []
    row = rows_by_id(stack)[event["messageId"]]
    assert row["EVENT_TYPE"] == event["type"] and row["USER_ID"] == event["userId"]


def test_group_add_then_remove_changes_static_segment_membership(stack):
    add = support.group("ADD", userId="cust-1")
    status, body, _ = invoke(api_event(add))
    assert status == 200 and body["delivered"] == 1
    assert [m["CUSTOMER_ID"] for m in stack.members()] == ["cust-1"]
    remove = support.group("remove", userId="cust-1", timestamp="2026-11-27T10:16:00.000Z")  # later
    status, body, _ = invoke(api_event(remove))
    assert status == 200 and body["delivered"] == 1
    assert stack.members() == []


def test_delete_removes_every_row_of_the_user(stack):
    events = [support.track(userId="u-del"), support.identify(userId="u-del"), support.track(userId="u-keep")]
    invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    assert len(stack.rows()) == 3
    status, body, _ = invoke(api_event(support.delete(userId="u-del")))
    assert status == 200 and body["delivered"] == 1
    assert [r["USER_ID"] for r in stack.rows()] == ["u-keep"]


def test_delete_of_an_unknown_user_counts_as_done(stack):
    status, body, _ = invoke(api_event(support.delete(userId="nobody")))
    assert status == 200 and body["delivered"] == 1


@pytest.mark.parametrize("shape", ["array", "batch"])
def test_batch_with_bearer_token_is_delivered_in_one_call_per_target(stack, shape):
    events = [support.track() for _ in range(40)] + [support.identify() for _ in range(40)]
    events += [support.group("ADD", userId=f"c-{i}") for i in range(10)] + [support.alias(), support.page()]
    payload = events if shape == "array" else {"batch": events, "context": {"library": {"name": "replay"}}}
    status, body, _ = invoke(api_event(payload, signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200, body
    assert body["delivered"] == len(events)
    assert len(stack.rows()) == 82 and len(stack.members()) == 10
    assert len(stack.smc_calls()) == 2  # events list + one static segment


def test_array_signed_over_its_first_event_is_refused_with_the_fix_when_no_bearer_is_sent(stack, capsys):
    capsys.readouterr()
    events = [support.track(), support.track()]
    first = json.dumps(events[0], separators=(",", ":")).encode()
    event = api_event(events, signature=support.sign(first))
    status, body, _ = invoke(event)
    assert status == 401 and body["error"] == "unauthorized"
    assert "Authorization: Bearer <token>" in body["message"]
    assert stack.smc_calls("/") == []
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert any(b.get("BatchSignedFirstEventOnly") == [1.0] and b.get("RequestsRefused") for b in blobs)


@pytest.mark.parametrize("shape", ["array", "batch"])
def test_signed_batch_is_delivered_when_the_signature_covers_the_whole_body(stack, shape):
    events = [support.track(), support.identify()]
    payload = events if shape == "array" else {"batch": events}
    status, body, _ = invoke(api_event(payload))
    assert status == 200 and body["delivered"] == 2, body
    assert {row["MESSAGE_ID"] for row in stack.rows()} == {e["messageId"] for e in events}


@pytest.mark.parametrize(
    "kwargs",
    [{"signature": "0" * 40}, {"signature": False}, {"signature": False, "bearer": "wrong-token"}],
)
def test_unauthenticated_request_is_a_401_and_never_reaches_smc(stack, kwargs):
    status, body, _ = invoke(api_event(support.track(), **kwargs))
    assert status == 401 and body["error"] == "unauthorized" and "requestId" in body
    assert stack.smc_calls("/") == []


def test_previous_shared_secret_is_accepted_during_rotation(stack):
    stack.set_secret(sharedSecret="brand-new-secret", sharedSecretPrevious=support.SHARED_SECRET)
    status, _, _ = invoke(api_event(support.track()))
    assert status == 200


def test_base64_encoded_body_is_authenticated_over_the_decoded_bytes(stack):
    status, body, _ = invoke(api_event(support.track(), base64_body=True))
    assert status == 200 and body["delivered"] == 1


def test_malformed_json_is_a_400_naming_the_problem(stack):
    body = b'{"type": "track",'
    status, answer, _ = invoke(api_event(body=body, signature=support.sign(body)))
    assert status == 400 and answer["error"] == "malformed_json"


def test_request_whose_every_event_is_invalid_is_a_400(stack):
    status, body, _ = invoke(api_event({"type": "track", "userId": "u"}))
    assert status == 400 and body["rejected"] == 1
    assert body["failures"][0]["reason"] == "track requires event"


def test_mixed_batch_answers_200_with_each_failure_named(stack):
    good, bad = support.track(), {"type": "alias", "userId": "u", "messageId": "bad-1"}
    filtered = support.track(integrations={"Selligent Marketing Cloud": False})
    status, body, _ = invoke(api_event([good, bad, filtered], signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200
    assert (body["delivered"], body["rejected"], body["filtered"]) == (1, 1, 1)
    assert body["failures"] == [
        {
            "index": 1,
            "messageId": "bad-1",
            "outcome": "rejected",
            "reason": "alias requires previousId and userId",
        }
    ]


def test_filtered_only_request_answers_200_without_calling_smc(stack):
    stack.set_env(SMC_ALLOWED_EVENTS="Signed Up")
    status, body, _ = invoke(api_event(support.track("Page Scrolled")))
    assert status == 200 and body["filtered"] == 1
    assert stack.smc_calls("/") == []


def test_smc_partial_success_rejects_only_the_invalid_rows(stack):
    support.narrow_event_name(stack.sandbox)
    events = [support.track(), support.track("x" * support.TOO_LONG_FOR_NARROW), support.track()]
    status, body, _ = invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200
    assert (body["delivered"], body["rejected"]) == (2, 1)
    failure = body["failures"][0]
    assert failure["index"] == 1 and failure["messageId"] == events[1]["messageId"]
    assert "MaxStringLengthExceeded" in failure["reason"] and "EVENT_NAME" in failure["reason"]
    assert set(rows_by_id(stack)) == {events[0]["messageId"], events[2]["messageId"]}


def test_redelivered_request_is_answered_from_memory_without_a_second_smc_call(stack):
    event = api_event([support.track(), support.identify()], signature=False, bearer=support.BEARER_TOKEN)
    first = invoke(event)
    calls = len(stack.smc_calls())
    again = dict(event, requestContext={**event["requestContext"], "requestId": "another-delivery"})
    second = invoke(again)
    assert first[0] == second[0] == 200 and first[1]["delivered"] == second[1]["delivered"] == 2
    assert second[2].get("X-Idempotent-Replay") == "true"
    assert len(stack.smc_calls()) == calls
    assert len(stack.rows()) == 2


def test_redelivery_with_events_in_another_order_and_spacing_is_still_a_replay(stack):
    events = [support.track(), support.identify()]
    invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    calls = len(stack.smc_calls())
    body = json.dumps(list(reversed(events)), indent=2)
    status, _, headers = invoke(api_event(body=body, signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200 and headers.get("X-Idempotent-Replay") == "true"
    assert len(stack.smc_calls()) == calls


def test_retryable_answer_is_not_remembered_so_the_retry_really_delivers(stack):
    stack.sandbox.inject(Fault(status=503, times=-1, path_contains="/data"))
    event = api_event(support.track())
    status, body, headers = invoke(event)
    assert status == 503 and body["retried"] == 1 and "Retry-After" in headers
    assert body["failures"][0]["reason"].startswith("smc_unavailable")
    stack.sandbox.clear_faults()
    status, body, headers = invoke(event)
    assert status == 200 and body["delivered"] == 1 and "X-Idempotent-Replay" not in headers
    assert len(stack.rows()) == 1


def test_smc_429_is_passed_on_to_segment_with_its_retry_after(stack):
    stack.sandbox.inject(Fault(status=429, retry_after="30", times=-1))
    status, body, headers = invoke(api_event(support.track()))
    assert status == 429 and headers["Retry-After"] == "30" and body["retried"] == 1


def test_transient_smc_errors_are_retried_within_the_request(stack):
    stack.sandbox.inject(Fault(status=502, times=2, path_contains="/data"))
    status, body, _ = invoke(api_event(support.track()))
    assert status == 200 and body["delivered"] == 1
    assert [c.status for c in stack.smc_calls()] == [502, 502, 200]


def test_dropped_connection_is_retried_and_the_row_lands_once(stack):
    stack.sandbox.inject(Fault(drop_connection=True, after_processing=True, path_contains="/data"))
    event = support.track()
    status, body, _ = invoke(api_event(event))
    assert status == 200 and body["delivered"] == 1
    assert len(stack.rows()) == 1 and len(stack.smc_calls()) == 2


def test_slow_smc_answers_segment_within_its_deadline_as_retryable(stack):
    import time

    stack.set_env(RESPONSE_DEADLINE_MS="1500")
    stack.sandbox.inject(Fault(delay_s=4.0, times=-1, path_contains="/data"))
    started = time.monotonic()
    status, body, _ = invoke(api_event(support.track()))
    assert time.monotonic() - started < 2.0
    assert status == 503 and body["retried"] == 1


def test_unknown_events_list_is_retryable_until_an_admin_creates_it(stack):
    stack.set_env(SMC_EVENTS_LIST="missing_list")
    status, body, _ = invoke(api_event(support.track()))
    assert status == 503 and body["failures"][0]["reason"].startswith("smc_target_not_found")


def test_unknown_static_segment_is_retryable(stack):
    status, body, _ = invoke(api_event(support.group("ADD", segment="no_such_segment")))
    assert status == 503 and "smc_target_not_found" in body["failures"][0]["reason"]


def test_rotated_smc_key_is_picked_up_after_a_401_without_waiting_for_the_cache(stack):
    invoke(api_event(support.track()))  # warms the secret cache with the current key
    stack.sandbox.add_service_account("svc-key-new", "svc-secret-new")
    stack.sandbox.remove_service_account(support.SMC_KEY)
    stack.set_secret(apiKey="svc-key-new", apiSecret="svc-secret-new")
    status, body, _ = invoke(api_event(support.track()))
    assert status == 200 and body["delivered"] == 1
    assert [c.status for c in stack.smc_calls()][-2:] == [401, 200]


def test_smc_auth_failure_that_survives_a_refresh_is_retryable(stack):
    stack.sandbox.remove_service_account(support.SMC_KEY)
    status, body, _ = invoke(api_event(support.track()))
    assert status == 503 and body["failures"][0]["reason"].startswith("smc_auth_failed")


def test_missing_setting_answers_500_naming_the_variable(stack, monkeypatch):
    monkeypatch.delenv("SMC_ORGANIZATION")
    stack.set_env()
    status, body, _ = invoke(api_event(support.track()))
    assert status == 500 and "SMC_ORGANIZATION" in body["message"]


def test_unreadable_secret_answers_500_without_echoing_it(stack):
    stack.set_secret(apiKey=None)
    status, body, _ = invoke(api_event(support.track()))
    assert status == 500 and body["error"] == "configuration_error" and "apiKey" in body["message"]


def test_one_thousand_event_batch_costs_one_smc_call_per_target(stack):
    events = []
    for i in range(1000):
        kind = i % 10
        if kind < 4:
            events.append(support.track())
        elif kind < 6:
            events.append(support.identify())
        elif kind == 6:
            events.append(support.page())
        elif kind == 7:
            events.append(support.screen())
        elif kind == 8:
            events.append(support.alias())
        else:
            events.append(support.group("ADD", userId=f"c-{i}"))
    status, body, _ = invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200 and body["delivered"] == 1000
    assert len(stack.smc_calls()) == 2
    assert len(stack.rows()) == 900 and len(stack.members()) == 100


def test_responses_and_logs_never_contain_secrets_or_personal_data(stack):
    from tests.conftest import CAPTURED_LOG_LINES, SECRET_VALUES

    start = len(CAPTURED_LOG_LINES)
    events = [
        support.identify(userId=support.PII_EMAIL),
        support.track(),
        {"type": "track", "userId": support.PII_EMAIL},
    ]
    answers = [
        invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN)),
        invoke(api_event(support.identify(), signature="f" * 40)),
        invoke(api_event(support.identify(), signature=False, bearer=support.SHARED_SECRET + "x")),
    ]
    stack.sandbox.inject(
        Fault(
            status=400,
            times=1,
            body={
                "result_code": "ValidationFailed",
                "errors": [{"error_code": "ERR_X", "description": support.PII_EMAIL}],
            },
        )
    )
    answers.append(invoke(api_event(support.identify())))
    lines = CAPTURED_LOG_LINES[start:]
    assert lines, "the handler logged nothing"
    text = "\n".join(lines) + "\n".join(json.dumps(a[1]) for a in answers)
    for value in SECRET_VALUES:
        assert value not in text


def test_every_log_line_carries_the_request_correlation_id(stack):
    from tests.conftest import CAPTURED_LOG_LINES

    start = len(CAPTURED_LOG_LINES)
    event = api_event(
        [support.track(), {"type": "bogus", "userId": "u"}], signature=False, bearer=support.BEARER_TOKEN
    )
    invoke(event)
    lines = [json.loads(line) for line in CAPTURED_LOG_LINES[start:]]
    assert lines and all(line.get("correlation_id") == event["requestContext"]["requestId"] for line in lines)
    per_event = [line for line in lines if line["message"] == "event not delivered"]
    assert per_event and all("messageId" in line for line in per_event)


def test_concurrent_duplicate_gets_a_retryable_429_and_never_a_second_delivery(stack):
    import threading

    stack.sandbox.inject(Fault(delay_s=1.5, times=1, path_contains="/data"))
    event = api_event([support.track(), support.identify()], signature=False, bearer=support.BEARER_TOKEN)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(invoke(event)))
    worker.start()
    import time

    time.sleep(0.5)
    status, body, headers = invoke(
        dict(event, requestContext={**event["requestContext"], "requestId": "twin"})
    )
    worker.join()
    assert status == 429 and body["error"] == "in_progress" and "Retry-After" in headers
    assert first[0][0] == 200
    assert [c.rows for c in stack.smc_calls()] == [2] and len(stack.rows()) == 2


def test_outcome_metrics_are_emitted_for_every_outcome_and_event_type(stack, capsys):
    capsys.readouterr()
    events = [support.track(), support.identify(), {"type": "track", "userId": "u"}]
    events.append(support.page(integrations={"Selligent Marketing Cloud": False}))
    invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    totals = next(b for b in blobs if "EventsDelivered" in b)
    assert totals["EventsDelivered"] == [2.0] and totals["EventsRejected"] == [1.0]
    assert totals["EventsFiltered"] == [1.0] and totals["EventsRetried"] == [0.0]
    assert totals["SmcRequests"] == [1.0] and "SmcLatency" in totals
    per_type = {b["EventType"]: b["EventsReceived"] for b in blobs if "EventType" in b}
    assert per_type == {"track": [2.0], "identify": [1.0], "page": [1.0]}


def test_smc_retry_after_within_the_deadline_is_honoured_then_delivered(stack):
    import time

    stack.sandbox.inject(Fault(status=429, retry_after="1", times=1, path_contains="/data"))
    started = time.monotonic()
    status, body, _ = invoke(api_event(support.track()))
    assert status == 200 and body["delivered"] == 1
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in stack.smc_calls()] == [429, 200]


def test_smc_client_user_agent_names_the_product_and_version():
    from handler import __version__
    from handler.smc.client import USER_AGENT, new_session

    assert USER_AGENT.startswith(f"segment-smc-destination/{__version__} ")
    assert new_session().headers["User-Agent"] == USER_AGENT
