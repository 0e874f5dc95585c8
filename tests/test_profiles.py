"""Profiles, audiences and transactional messages (issue 12), end to end over real HTTP: the real
lambda_handler, moto for AWS, the SMC sandbox's user list `users` (keyed on CUSTOMER_ID), its
static segments and its transactional journey `order_confirmation`."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from handler.cli import main as cli
from handler.mappers.audience import segment_name
from sandbox import Fault, seed_default
from tests import support
from tests.support import api_event, invoke, redelivered

ORG, USERS = support.ORG, "users"
FIELDS = {"MAIL": "traits.email", "FIRSTNAME": "traits.firstName", "CITY": "traits.address.city"}


@pytest.fixture
def profiles(stack: Any) -> Any:
    """The stack with profiles on (the conftest's `stack` clears these settings for every test)."""
    stack.set_env(
        SMC_PROFILE_LIST=USERS,
        SMC_PROFILE_KEY="CUSTOMER_ID",
        SMC_PROFILE_FIELDS=json.dumps(FIELDS),
        SMC_TRANSACTIONAL_EVENTS=json.dumps({"Order Completed": "order_confirmation"}),
        SMC_TRANSACTIONAL_LANGUAGE="EN",
    )
    return stack


def bearer(events: list[dict[str, Any]]) -> dict[str, Any]:
    return api_event(events, signature=False, bearer=support.BEARER_TOKEN)


def profile(stack: Any, user_id: str) -> dict[str, Any] | None:
    found = [row for row in stack.rows(USERS) if row["CUSTOMER_ID"] == user_id]
    assert len(found) <= 1
    return found[0] if found else None


def members(stack: Any, segment: str) -> set[str]:
    return {m["CUSTOMER_ID"] for m in stack.members(segment)}


def messages(stack: Any) -> list[dict[str, Any]]:
    return list(stack.sandbox.messages(ORG, "order_confirmation"))


def audience(track: str, user_id: str, key: str, when: str) -> dict[str, Any]:
    personas = {"computation_class": "audience", "computation_key": key}
    properties = {"audience_key": key, key: track == "Audience Entered"}
    return support.track(
        track, userId=user_id, timestamp=when, properties=properties, context={"personas": personas}
    )


def entered(user_id: str, key: str = "high_value", when: str = "2026-11-27T10:00:00.000Z") -> dict[str, Any]:
    return audience("Audience Entered", user_id, key, when)


def exited(user_id: str, key: str = "high_value", when: str = "2026-11-27T11:00:00.000Z") -> dict[str, Any]:
    return audience("Audience Exited", user_id, key, when)


# -- profiles --------------------------------------------------------------------------------------
def test_identify_upserts_the_profile_with_only_the_columns_it_carries(profiles):
    first = support.identify(userId="p-1", traits={"email": "p1@example.com", "firstName": "Ann"})
    assert invoke(api_event(first))[0] == 200
    row = profile(profiles, "p-1")
    assert (row["MAIL"], row["FIRSTNAME"], row["CITY"]) == ("p1@example.com", "Ann", None)
    later = support.identify(
        userId="p-1", traits={"address": {"city": "Ghent"}}, timestamp="2026-11-28T10:00:00Z"
    )
    status, body, _ = invoke(api_event(later))
    assert status == 200 and body["delivered"] == 1
    row = profile(profiles, "p-1")
    assert (row["MAIL"], row["FIRSTNAME"], row["CITY"]) == ("p1@example.com", "Ann", "Ghent")


def test_only_update_never_creates_an_unknown_person(profiles):
    profiles.set_env(SMC_PROFILE_MODE="OnlyUpdate")
    status, body, _ = invoke(
        api_event(support.identify(userId="stranger", traits={"email": "s@example.com"}))
    )
    assert status == 200 and body["delivered"] == 1, body
    assert profile(profiles, "stranger") is None


def test_a_stale_identify_never_overwrites_a_newer_value(profiles):
    newer = support.identify(
        userId="p-2", traits={"email": "new@example.com"}, timestamp="2026-11-28T10:00:00Z"
    )
    older = support.identify(
        userId="p-2", traits={"email": "old@example.com", "firstName": "Bo"}, timestamp="2026-11-27T10:00:00Z"
    )
    assert invoke(api_event(newer))[0] == 200
    status, body, _ = invoke(api_event(older))
    assert status == 200, body
    row = profile(profiles, "p-2")
    assert row["MAIL"] == "new@example.com"  # the newer value stands
    assert row["FIRSTNAME"] == "Bo"  # the older event's other column was newer news: applied


def test_a_stale_column_is_settled_at_once_while_a_newer_identify_of_other_columns_is_in_flight(profiles):
    def identify(when: str, **traits: str) -> dict[str, Any]:
        return support.identify(userId="p-3", traits=traits, timestamp=f"2026-11-27T{when}:00.000Z")

    assert invoke(bearer([identify("09:00", email="z@example.com", firstName="Zed")]))[0] == 200
    assert invoke(bearer([identify("10:00", email="a@example.com", firstName="Ann")]))[0] == 200
    time.sleep(0.3)  # that request's leases are released, in the background
    # B (FIRSTNAME only, newest) is in flight at SMC while C (MAIL only, older than 10:00) arrives
    profiles.sandbox.inject(Fault(delay_s=1.5, times=1, method="POST", path_contains="/lists/users/data"))
    answers: dict[str, Any] = {}
    b = threading.Thread(
        target=lambda: answers.setdefault("B", invoke(bearer([identify("11:00", firstName="Bea")])))
    )
    b.start()
    time.sleep(0.4)
    status, body, _ = invoke(bearer([identify("09:30", email="old@example.com")]))
    b.join()
    # B never touches MAIL, last set at 10:00 by a request that is done: C is stale, not held back
    # (its events-list row is delivered; its profile part is settled stale)
    assert status == 200 and body["retried"] == 0 and body["delivered"] == 1, body
    assert answers["B"][0] == 200
    row = profile(profiles, "p-3")
    assert (row["MAIL"], row["FIRSTNAME"]) == ("a@example.com", "Bea")


def test_two_identifies_of_one_profile_in_a_request_apply_the_newer_traits(profiles):
    newer = support.identify(
        userId="p-5", traits={"email": "new@example.com"}, timestamp="2026-11-28T10:00:00Z"
    )
    older = support.identify(
        userId="p-5", traits={"email": "old@example.com"}, timestamp="2026-11-27T10:00:00Z"
    )
    profiles.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer([newer, older]))
    assert status == 200, body
    # the older profile row is never sent (its events-list row is: that part overwrites nothing)
    assert [call.rows for call in profiles.smc_calls(f"/lists/{USERS}/data/load")] == [1]
    assert profile(profiles, "p-5")["MAIL"] == "new@example.com"
    # the record holds the newer value: the older identify alone is stale too
    status, body, _ = invoke(bearer([older]))
    assert status == 200, body
    assert profile(profiles, "p-5")["MAIL"] == "new@example.com"


def test_a_stale_remove_stays_stale_beside_two_identifies_of_one_profile(profiles):
    victim = support.group("ADD", userId="victim", timestamp="2026-11-27T11:00:00.000Z")
    assert invoke(api_event(victim))[0] == 200
    first = support.identify(
        userId="s-p", traits={"email": "old@example.com", "firstName": "Bo"}, timestamp="2026-11-27T11:00:00Z"
    )
    second = support.identify(
        userId="s-p", traits={"email": "new@example.com"}, timestamp="2026-11-27T12:00:00Z"
    )
    remove = support.group("REMOVE", userId="victim", timestamp="2026-11-27T10:00:00.000Z")
    status, body, _ = invoke(bearer([first, second, remove]))
    assert status == 200 and body["duplicate"] == 1, body
    assert members(profiles, "vip") == {"victim"}
    row = profile(profiles, "s-p")
    assert (row["MAIL"], row["FIRSTNAME"]) == ("new@example.com", "Bo")  # per column, newest wins


def test_profile_and_events_row_of_one_request_are_both_delivered_with_one_call_per_target(profiles):
    events = [support.identify(userId=f"p-{i}", traits={"email": f"p{i}@example.com"}) for i in range(20)]
    events += [support.track("Signed Up") for _ in range(5)]
    profiles.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer(events))
    assert status == 200 and body["delivered"] == 25, body
    loads = [(c.path.rsplit("/", 3)[-3], c.rows) for c in profiles.smc_calls("/data/load")]
    assert sorted(loads) == [("segment_events", 25), (USERS, 20)]


def test_a_mapped_column_the_list_lacks_is_retried_and_named_by_check(profiles, capsys):
    profiles.sandbox.remove_field(ORG, USERS, "FIRSTNAME")
    status, body, _ = invoke(api_event(support.identify(userId="p-3", traits={"firstName": "Cy"})))
    assert status == 503 and body["retried"] == 1, body
    assert "profile: smc_target_not_found" in body["failures"][0]["reason"]
    assert "column FIRSTNAME on list users" in body["failures"][0]["reason"]
    assert cli(["check"]) == 1
    assert any(
        "FIRSTNAME" in line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")
    )


def test_a_delete_removes_the_profile_record(profiles):
    assert invoke(api_event(support.identify(userId="p-4", traits={"email": "p4@example.com"})))[0] == 200
    status, body, _ = invoke(api_event(support.delete(userId="p-4")))
    assert status == 200 and body["delivered"] == 1, body
    assert profile(profiles, "p-4") is None
    status, _, _ = invoke(api_event(support.delete(userId="p-4")))  # nothing left: still done
    assert status == 200


# -- audiences -------------------------------------------------------------------------------------
def test_audience_entered_and_exited_tracks_keep_the_segment_in_sync(profiles):
    profiles.sandbox.add_segment(ORG, USERS, "high_value")
    assert invoke(api_event(entered("a-1")))[0] == 200
    assert members(profiles, "high_value") == {"a-1"}
    assert invoke(api_event(exited("a-1")))[0] == 200
    assert members(profiles, "high_value") == set()


def test_an_identify_whose_audience_trait_flips_changes_the_membership(profiles):
    profiles.sandbox.add_segment(ORG, USERS, "churn_risk")
    personas = {"computation_class": "audience", "computation_key": "churn_risk"}
    on = support.identify(userId="a-2", traits={"churn_risk": True}, context={"personas": personas})
    off = support.identify(
        userId="a-2",
        traits={"churn_risk": False},
        context={"personas": personas},
        timestamp="2026-11-28T00:00:00Z",
    )
    assert invoke(api_event(on))[0] == 200 and members(profiles, "churn_risk") == {"a-2"}
    assert invoke(api_event(off))[0] == 200 and members(profiles, "churn_risk") == set()


def test_a_missing_audience_segment_is_created_once_then_used(profiles):
    profiles.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer([entered("a-3", key="new_audience"), entered("a-4", key="new_audience")]))
    assert status == 200 and body["delivered"] == 2, body
    assert invoke(api_event(entered("a-5", key="new_audience")))[0] == 200
    creations = [c for c in profiles.sandbox.requests_log if c.path.endswith("/segments/static")]
    assert len(creations) == 1
    assert members(profiles, "new_audience") == {"a-3", "a-4", "a-5"}


def test_a_segment_creation_smc_answers_failed_is_tried_again_on_the_next_delivery(profiles):
    # a 200 whose result code says Failed created nothing (as the Swagger's answer model allows)
    profiles.sandbox.inject(Fault(result_code="Failed", path_contains="/segments/static"))
    status, body, _ = invoke(api_event(entered("a-8", key="late_audience")))
    assert status == 503 and "did not create" in body["failures"][0]["reason"], body
    status, body, _ = invoke(api_event(entered("a-9", key="late_audience")))
    assert status == 200, body
    assert members(profiles, "late_audience") == {"a-9"}


def test_a_segment_created_earlier_and_gone_since_is_created_again(profiles):
    assert invoke(api_event(entered("a-10", key="comeback")))[0] == 200
    # SMC loses the segment (deleted by a user, a restored tenant); this process created it once
    profiles.sandbox.reset()
    seed_default(profiles.sandbox)
    profiles.sandbox.add_service_account(support.SMC_KEY, support.SMC_SECRET)
    status, body, _ = invoke(api_event(entered("a-11", key="comeback")))
    assert status == 503 and "smc_target_not_found" in body["failures"][0]["reason"], body
    status, body, _ = invoke(api_event(entered("a-12", key="comeback")))
    assert status == 200, body
    assert members(profiles, "comeback") == {"a-12"}


def test_distinct_audience_keys_that_normalise_alike_fill_distinct_segments(profiles):
    status, body, _ = invoke(bearer([entered("a-13", key="gold-tier"), entered("a-14", key="gold tier")]))
    assert status == 200 and body["delivered"] == 2, body
    made = [c for c in profiles.sandbox.requests_log if c.path.endswith("/segments/static")]
    assert len(made) == 2
    assert members(profiles, segment_name("gold-tier")) == {"a-13"}
    assert members(profiles, segment_name("gold tier")) == {"a-14"}


@pytest.mark.parametrize("via", ["track", "identify"])
def test_only_update_audience_membership_never_creates_an_unknown_person(profiles, via):
    profiles.set_env(SMC_PROFILE_MODE="OnlyUpdate")
    profiles.sandbox.add_segment(ORG, USERS, "high_value")
    personas = {"computation_class": "audience", "computation_key": "high_value"}
    if via == "track":
        event = entered("stranger-1")
    else:
        event = support.identify(
            userId="stranger-1", traits={"high_value": True}, context={"personas": personas}
        )
    status, body, _ = invoke(api_event(event))
    # SMC skips a record it does not have, as it was asked to: the membership is done
    assert status == 200 and body["delivered"] == 1, body
    assert profile(profiles, "stranger-1") is None
    assert members(profiles, "high_value") == set()


def test_only_update_audience_membership_adds_a_person_smc_knows(profiles):
    known(profiles, "a-16")
    profiles.set_env(SMC_PROFILE_MODE="OnlyUpdate")
    assert invoke(api_event(entered("a-16", key="new_only_update")))[0] == 200
    assert members(profiles, "new_only_update") == {"a-16"}


def test_a_stale_exited_never_removes_a_newer_entered(profiles):
    profiles.sandbox.add_segment(ORG, USERS, "high_value")
    assert invoke(api_event(entered("a-6", when="2026-11-27T12:00:00.000Z")))[0] == 200
    profiles.sandbox.clear_requests_log()
    status, body, _ = invoke(api_event(exited("a-6", when="2026-11-27T11:00:00.000Z")))
    # its events-list row is delivered; its stale membership part never reaches SMC
    assert status == 200 and body["delivered"] == 1, body
    assert profiles.smc_calls("/segments/high_value/data") == []
    assert members(profiles, "high_value") == {"a-6"}


def test_an_unusable_audience_key_rejects_the_event_with_a_reason(profiles):
    status, body, _ = invoke(api_event(entered("a-7", key="???")))
    assert status == 400 and "audience key" in body["failures"][0]["reason"]


# -- transactional messages ------------------------------------------------------------------------
def order(user_id: str, **fields: Any) -> dict[str, Any]:
    return support.track("Order Completed", userId=user_id, properties={"orderId": "o-1"}, **fields)


def known(stack: Any, user_id: str) -> None:
    assert (
        invoke(api_event(support.identify(userId=user_id, traits={"email": f"{user_id}@example.com"})))[0]
        == 200
    )


def test_a_transactional_track_sends_the_journey_to_the_profile(profiles):
    known(profiles, "t-1")
    status, body, _ = invoke(api_event(order("t-1")))
    assert status == 200 and body["delivered"] == 1, body
    (message,) = messages(profiles)
    assert message["recipient"] == "t-1" and message["language"] == "EN"


def test_a_recipient_smc_cannot_find_is_rejected_with_its_reason(profiles):
    status, body, _ = invoke(api_event(order("nobody")))
    assert status == 400 and "transactional message" in body["failures"][0]["reason"], body
    assert messages(profiles) == []


def test_a_transactional_send_is_not_repeated_when_its_request_is_redelivered(profiles):
    known(profiles, "t-2")
    # the events-list row fails (SMC refuses it without naming a row: retried, and no sign SMC is
    # down, so the send is made), the send succeeds: Segment retries the whole request
    failed = Fault(result_code="Failed", times=-1, path_contains="/lists/segment_events/data/load")
    profiles.sandbox.inject(failed)
    request = api_event(order("t-2"))
    status, body, _ = invoke(request)
    assert status == 503, body
    profiles.sandbox.clear_faults()
    for again in (
        redelivered(request),
        bearer([order("t-2", messageId=json.loads(request["body"])["messageId"])]),
    ):
        status, body, _ = invoke(again)
        assert status == 200 and body["delivered"] == 1, body
    assert len(messages(profiles)) == 1


def test_a_send_whose_answer_is_lost_is_never_repeated_and_is_reported_unconfirmed(profiles):
    known(profiles, "t-3")
    lost = Fault(drop_connection=True, after_processing=True, path_contains="/journeys/transactional/")
    profiles.sandbox.inject(lost)
    request = api_event(order("t-3"))
    status, body, _ = invoke(request)
    assert status == 400 and body["failures"][0]["reason"].endswith(
        "unconfirmed transactional send, not repeated"
    )
    profiles.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer([order("t-3", messageId=json.loads(request["body"])["messageId"])]))
    assert "unconfirmed transactional send, not repeated" in body["failures"][0]["reason"]
    assert len(messages(profiles)) == 1  # sent once, by the first attempt
    assert profiles.smc_calls("/journeys/transactional/") == []  # and never again


def test_a_send_smc_answers_it_did_not_make_is_retried_and_then_sent_once(profiles):
    known(profiles, "t-4")
    # each recipient's own result code says SMC did not send it, and may later
    not_now = Fault(result_code="ServiceUnavailable", path_contains="/journeys/transactional/")
    profiles.sandbox.inject(not_now)
    request = api_event(order("t-4"))
    status, body, _ = invoke(request)
    assert status == 503 and body["retried"] == 1, body
    assert messages(profiles) == []
    status, body, _ = invoke(redelivered(request))
    assert status == 200 and body["delivered"] == 1, body
    assert len(messages(profiles)) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_send_answered_429_or_503_is_read_as_not_made_retried_and_sent_once(profiles, status):
    known(profiles, "t-5")
    profiles.sandbox.inject(Fault(status=status, times=-1, path_contains="/journeys/transactional/"))
    request = api_event(order("t-5"))
    answer, body, _ = invoke(request)
    assert answer in (429, 503) and body["retried"] == 1, body
    assert messages(profiles) == []
    profiles.sandbox.clear_faults()
    answer, body, _ = invoke(redelivered(request))
    assert answer == 200 and body["delivered"] == 1, body
    assert len(messages(profiles)) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_send_answered_another_5xx_after_smc_sent_it_goes_out_once_and_is_reported_unconfirmed(
    profiles, status
):
    known(profiles, "t-6")
    # no such status proves SMC did not act: here a gateway answers it after the message went out
    late = Fault(status=status, after_processing=True, path_contains="/journeys/transactional/")
    profiles.sandbox.inject(late)
    profiles.sandbox.clear_requests_log()
    request = api_event(order("t-6"))
    answer, body, _ = invoke(request)
    assert answer == 400 and "unconfirmed transactional send, not repeated" in body["failures"][0]["reason"]
    assert len(profiles.smc_calls("/journeys/transactional/")) == 1  # not repeated in the request
    assert len(messages(profiles)) == 1
    answer, body, _ = invoke(bearer([order("t-6", messageId=json.loads(request["body"])["messageId"])]))
    assert "unconfirmed transactional send, not repeated" in body["failures"][0]["reason"]
    assert len(messages(profiles)) == 1  # nor by Segment's retry


def test_a_send_waits_for_its_recipients_profile_load_that_failed_in_the_same_batch(profiles):
    # a new person: SMC's lookup finds them only once the profile load of this batch has landed
    request = bearer([support.identify(userId="t-7", traits={"email": "t7@example.com"}), order("t-7")])
    profiles.sandbox.inject(Fault(status=503, times=-1, path_contains="/lists/users/data/load"))
    profiles.set_env(RESPONSE_DEADLINE_MS="1500")
    status, body, _ = invoke(request)
    assert status == 503 and body["retried"] == 2, body
    track = next(f for f in body["failures"] if f["index"] == 1)
    assert track["outcome"] == "retried" and "recipient's profile load" in track["reason"], track
    assert profiles.smc_calls("/journeys/transactional/") == []
    profiles.sandbox.clear_faults()
    status, body, _ = invoke(redelivered(request))
    assert status == 200 and body["delivered"] == 2, body
    (message,) = messages(profiles)
    assert message["recipient"] == "t-7" and message["profile"]["MAIL"] == "t7@example.com"


def test_a_send_for_someone_else_is_not_held_by_a_profile_row_smc_refused(profiles):
    known(profiles, "t-8")
    # t-9's profile row is refused for good (SMC names it invalid): waiting would not change
    # that, so it holds back no message, t-8's least of all; t-9's own send is settled by SMC
    refused = Fault(result_code="Failed", invalid_rows=[0], path_contains="/lists/users/data/load")
    profiles.sandbox.inject(refused)
    request = bearer(
        [support.identify(userId="t-9", traits={"email": "t9@example.com"}), order("t-8"), order("t-9")]
    )
    status, body, _ = invoke(request)
    assert status == 200, body
    reasons = {f["index"]: f["reason"] for f in body["failures"]}
    assert set(reasons) == {0, 2} and "transactional message: SMC NotFound" in reasons[2], body
    assert [m["recipient"] for m in messages(profiles)] == ["t-8"]


def test_a_send_is_not_attempted_while_smc_is_unavailable_to_the_batchs_loads(profiles):
    known(profiles, "t-10")
    # an outage: a send answered 503 could not be repeated, so it is not risked, but retried
    profiles.sandbox.inject(Fault(status=503, times=-1, path_contains="/lists/users/data/load"))
    profiles.set_env(RESPONSE_DEADLINE_MS="1500")
    profiles.sandbox.clear_requests_log()
    request = bearer([support.identify(userId="t-11", traits={"email": "t11@example.com"}), order("t-10")])
    status, body, _ = invoke(request)
    assert status == 503 and body["retried"] == 2, body
    track = next(f for f in body["failures"] if f["index"] == 1)
    assert "SMC was unavailable to another call" in track["reason"], track
    assert profiles.smc_calls("/journeys/transactional/") == []
    profiles.sandbox.clear_faults()
    status, body, _ = invoke(redelivered(request))
    assert status == 200 and body["delivered"] == 2, body
    assert [m["recipient"] for m in messages(profiles)] == ["t-10"]


def test_a_transactional_track_not_in_the_allowlist_still_sends(profiles):
    known(profiles, "t-5")
    profiles.set_env(SMC_ALLOWED_EVENTS="Signed Up")
    status, body, _ = invoke(api_event(order("t-5")))
    assert status == 200 and body["delivered"] == 1, body
    assert len(messages(profiles)) == 1
    assert not [r for r in profiles.rows() if r["EVENT_NAME"] == "Order Completed"]
