"""Order-safe state: a stale change never overrides a newer one (issue 11), end to end over real
HTTP: the real lambda_handler, the ordering records in moto, the memberships in the SMC sandbox."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from handler.claims import BUSY, ORDERING_ERROR
from handler.ordering import LEASE_PREFIX, record_key
from sandbox import Fault
from tests import support
from tests.support import api_event, invoke, redelivered

MEMBER = "cust-ordered"
ADD_PATH = "/segments/vip/data/load"  # POST: an ADD
REMOVE_PATH = "/segments/vip/data"  # DELETE: a REMOVE (the ADD's path contains it too)


def at(hour: int, minute: int = 0) -> str:
    return f"2026-11-27T{hour:02d}:{minute:02d}:00.000Z"


def change(method: str, when: str, **fields: Any) -> dict[str, Any]:
    return support.group(method, userId=MEMBER, timestamp=when, **fields)


def bearer(events: list[dict[str, Any]]) -> dict[str, Any]:
    return api_event(events, signature=False, bearer=support.BEARER_TOKEN)


def is_member(stack: Any) -> bool:
    return MEMBER in {m["CUSTOMER_ID"] for m in stack.members()}


def until_settled(request: dict[str, Any], attempts: int = 6) -> tuple[int, dict[str, Any]]:
    """Segment's side: send `request`, and again while the answer says to retry."""
    status, body, _ = invoke(request)
    while status in (429, 503) and attempts > 1:
        attempts -= 1
        time.sleep(0.2)
        status, body, _ = invoke(redelivered(request))
    return status, body


def removes(stack: Any) -> list[Any]:
    """The REMOVE calls SMC received (DELETE; the ADD's path contains REMOVE_PATH too)."""
    return [call for call in stack.smc_calls(REMOVE_PATH) if call.method == "DELETE"]


def membership_record(stack: Any) -> dict[str, str]:
    """MEMBER's ordering record for users/vip, as DynamoDB holds it (string attributes)."""
    import boto3

    key = record_key("member", support.ORG.lower(), "users", "vip", "customer_id", MEMBER)
    item = boto3.client("dynamodb").get_item(TableName=stack.state_table, Key={"id": {"S": key}})["Item"]
    return {name: value["S"] for name, value in item.items() if "S" in value}


def outcome_of(body: dict[str, Any], message_id: str) -> tuple[str, str] | None:
    found = [(f["outcome"], f["reason"]) for f in body["failures"] if f["messageId"] == message_id]
    return found[0] if found else None


# -- the review's three-step scenario, and its mirror ---------------------------------------------
def test_a_retried_add_never_undoes_a_newer_remove_applied_in_between(stack):
    add, track = change("ADD", at(10)), support.track()
    # 1. R1's ADD is applied, but its track's load fails: R1 is answered 503
    stack.sandbox.inject(Fault(status=503, times=-1, path_contains="/lists/segment_events/data/load"))
    status, body, _ = invoke(bearer([add, track]))
    assert status == 503 and is_member(stack), body
    stack.sandbox.clear_faults()
    # 2. R2 removes the member at 11:00
    status, body, _ = invoke(bearer([change("REMOVE", at(11))]))
    assert status == 200 and body["delivered"] == 1 and not is_member(stack)
    # 3. Segment retries R1 re-formed with other events (stream batching), so nothing remembers
    #    it by request: the ordering record does, and the stale ADD never reaches SMC
    stack.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer([add, track, support.track()]))
    assert status == 200, body
    assert body["duplicate"] == 1 and body["delivered"] == 2
    assert stack.smc_calls(ADD_PATH) == []
    assert not is_member(stack)


def test_the_same_request_retried_is_answered_from_its_progress_without_reapplying(stack):
    add, track = change("ADD", at(10)), support.track()
    stack.sandbox.inject(Fault(status=503, times=-1, path_contains="/lists/segment_events/data/load"))
    request = bearer([add, track])
    assert invoke(request)[0] == 503
    stack.sandbox.clear_faults()
    assert invoke(bearer([change("REMOVE", at(11))]))[0] == 200
    status, body, _ = invoke(redelivered(request))
    assert status == 200 and body["delivered"] == 2, body  # the ADD as it was settled then
    assert not is_member(stack)


def test_an_older_add_arriving_after_a_newer_remove_is_stale(stack):
    assert invoke(bearer([change("ADD", at(9))]))[0] == 200  # a member to begin with
    assert invoke(bearer([change("REMOVE", at(11))]))[0] == 200
    older = change("ADD", at(10))
    stack.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer([older, support.track()]))
    assert status == 200 and body["duplicate"] == 1, body
    assert outcome_of(body, older["messageId"]) is None  # duplicates are not failures
    assert stack.smc_calls(ADD_PATH) == [] and not is_member(stack)


def test_an_older_remove_arriving_after_a_newer_add_is_stale(stack):
    assert invoke(bearer([change("ADD", at(11))]))[0] == 200
    status, body, _ = invoke(bearer([change("REMOVE", at(10))]))
    assert status == 200 and body["duplicate"] == 1, body
    assert is_member(stack)


def test_same_timestamp_changes_are_ordered_by_message_id(stack):
    first = change("ADD", at(10), messageId="m-2")
    second = change("REMOVE", at(10), messageId="m-1")  # sorts before m-2: the older of the two
    assert invoke(bearer([first]))[0] == 200
    status, body, _ = invoke(bearer([second]))
    assert status == 200 and body["duplicate"] == 1 and is_member(stack)


def test_redelivery_of_the_same_change_is_applied_again(stack):
    add = change("ADD", at(10))
    assert invoke(api_event(add))[0] == 200
    status, body, _ = invoke(bearer([add, support.track()]))  # a re-formed batch holding it
    assert status == 200 and body["delivered"] == 2 and is_member(stack)


def test_a_change_smc_refuses_for_good_does_not_advance_the_record(stack):
    # the user list refuses the ADD's row (a NOT NULL column the row does not fill)
    stack.sandbox.add_fields(
        support.ORG, "users", [{"name": "REQUIRED_NOTE", "data_type": "Text", "allow_null": False}]
    )
    refused = change("ADD", at(11))
    status, body, _ = invoke(bearer([refused]))
    assert status == 400 and body["rejected"] == 1, body
    stack.sandbox.remove_field(support.ORG, "users", "REQUIRED_NOTE")
    # an older change is not stale: the refused newer one never happened
    status, body, _ = invoke(bearer([change("ADD", at(10))]))
    assert status == 200 and body["delivered"] == 1 and is_member(stack), body


# -- several changes of one record in one request --------------------------------------------------
def test_two_changes_of_one_member_in_a_request_apply_the_newer_whatever_the_matchkey_case(stack):
    assert invoke(bearer([change("ADD", at(9))]))[0] == 200
    newer = change("ADD", at(11))
    older = change("REMOVE", at(10))
    older["traits"]["matchkey"] = "customer_id"  # SMC's names are case-insensitive: the same member
    stack.sandbox.clear_requests_log()
    status, body, _ = invoke(bearer([newer, older]))
    assert status == 200, body
    assert removes(stack) == []
    assert is_member(stack)
    # and the record holds the newer change, so the older one stays stale on its own later
    status, body, _ = invoke(bearer([change("REMOVE", at(10))]))
    assert status == 200 and body["duplicate"] == 1 and is_member(stack), body


def test_a_store_refusing_the_request_as_invalid_retries_the_change_instead_of_sending_it(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    proxy.only = "BatchGetItem"
    proxy.set_mode("invalid")
    event = change("ADD", at(10))
    status, body, _ = invoke(bearer([event]))
    assert status == 503 and body["retried"] == 1, body
    assert outcome_of(body, event["messageId"]) == ("retried", ORDERING_ERROR)
    assert stack.smc_calls(ADD_PATH) == [] and not is_member(stack)


# -- timestamps that cannot order ------------------------------------------------------------------
def test_a_timestamp_far_in_the_future_is_ordered_by_received_at_so_a_newer_change_still_wins(stack):
    future = change("ADD", "9999-12-31T23:59:59.999Z", receivedAt=at(10))
    status, body, _ = invoke(bearer([future]))
    assert status == 200 and body["delivered"] == 1 and is_member(stack), body
    status, body, _ = invoke(bearer([change("REMOVE", at(11))]))
    assert status == 200 and body["delivered"] == 1, body
    assert not is_member(stack)


# -- a send SMC did not take never advances the record ---------------------------------------------
def test_a_failed_send_leaves_the_record_so_an_older_change_is_still_applied(stack):
    assert invoke(bearer([change("ADD", at(9))]))[0] == 200
    stack.sandbox.inject(Fault(status=503, times=-1, method="DELETE", path_contains=REMOVE_PATH))
    failed = bearer([change("REMOVE", at(11))])
    assert invoke(failed)[0] == 503
    stack.sandbox.clear_faults()
    status, body, _ = invoke(bearer([change("ADD", at(10))]))
    assert status == 200 and body["delivered"] == 1, body  # not stale: the REMOVE never happened
    # Segment's retry of the failed REMOVE, the newest change, lands last
    status, body = until_settled(redelivered(failed))
    assert status == 200 and not is_member(stack), body


def test_an_undone_claim_puts_back_both_the_stamp_and_the_state_before_it(stack):
    assert invoke(bearer([change("ADD", at(9))]))[0] == 200
    before = membership_record(stack)
    stack.sandbox.inject(
        Fault(result_code="Failed", invalid_rows=[0], method="DELETE", path_contains=REMOVE_PATH)
    )
    status, body, _ = invoke(bearer([change("REMOVE", at(11))]))
    assert status == 400 and body["rejected"] == 1, body
    after = membership_record(stack)
    assert (after["s:member"], after["v:member"]) == (before["s:member"], "ADD")


# -- concurrent requests: the newer change wins every interleaving --------------------------------
def race(stack: Any, first: dict[str, Any], second: dict[str, Any], delay_path: str, method: str) -> None:
    """`first` is sent, its SMC call held for a second; `second` is sent while it is in flight.
    Each side then behaves as Segment does (retries 429/503) until both are settled."""
    stack.sandbox.inject(Fault(delay_s=1.0, times=1, method=method, path_contains=delay_path))
    answers: dict[str, tuple[int, dict[str, Any]]] = {}

    def send(name: str, event: dict[str, Any]) -> None:
        answers[name] = until_settled(bearer([event]))

    worker = threading.Thread(target=send, args=("first", first))
    worker.start()
    time.sleep(0.3)
    send("second", second)
    worker.join()
    assert {status for status, _ in answers.values()} == {200}, answers


@pytest.mark.parametrize(
    ("first", "second", "member"),
    [
        (("ADD", 10), ("REMOVE", 11), False),  # the older is in flight when the newer arrives
        (("REMOVE", 10), ("ADD", 11), True),
        (("REMOVE", 11), ("ADD", 10), False),  # the newer is in flight when the older arrives
        (("ADD", 11), ("REMOVE", 10), True),
    ],
    ids=["older-add-in-flight", "older-remove-in-flight", "newer-remove-in-flight", "newer-add-in-flight"],
)
def test_concurrent_changes_of_one_member_end_with_the_newest(stack, first, second, member):
    if first[0] == "REMOVE" or second[0] == "REMOVE":
        invoke(bearer([change("ADD", at(8))]))  # so that a REMOVE has something to remove
    path, method = (ADD_PATH, "POST") if first[0] == "ADD" else (REMOVE_PATH, "DELETE")
    race(stack, change(first[0], at(first[1])), change(second[0], at(second[1])), path, method)
    assert is_member(stack) is member


def test_a_newer_change_held_by_another_requests_lease_is_retried_never_sent_alongside(stack, aws_proxy):
    # A slow store makes the claim's waits on the lease outlast the calls' wait for the claim.
    proxy = aws_proxy("dynamodb")
    proxy.only = "BatchGetItem"
    proxy.slow_s = 0.1
    proxy.set_mode("slow")
    stack.sandbox.inject(Fault(delay_s=2.0, times=1, method="POST", path_contains=ADD_PATH))
    first: list[int] = []
    older = threading.Thread(target=lambda: first.append(until_settled(bearer([change("ADD", at(10))]))[0]))
    older.start()
    time.sleep(0.5)  # the ADD is claimed and on its way to SMC
    newer = change("REMOVE", at(11))
    request = bearer([newer])
    status, body, _ = invoke(request)
    assert status == 503 and outcome_of(body, newer["messageId"]) == ("retried", BUSY), body
    assert removes(stack) == []
    older.join()
    status, body = until_settled(redelivered(request))
    assert first == [200] and status == 200, body
    assert not is_member(stack)


def test_concurrent_changes_started_together_end_with_the_newest(stack):
    invoke(bearer([change("ADD", at(8))]))
    for _ in range(3):
        events = [change("REMOVE", at(11)), change("ADD", at(10))]
        threads = [threading.Thread(target=until_settled, args=(bearer([e]),)) for e in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not is_member(stack)


def test_an_older_change_in_flight_that_smc_fails_is_overtaken_by_the_newer(stack):
    invoke(bearer([change("ADD", at(8))]))
    stack.sandbox.inject(Fault(status=503, delay_s=0.5, times=-1, method="POST", path_contains=ADD_PATH))
    older = bearer([change("ADD", at(10))])
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(invoke(older)[0]))
    worker.start()
    time.sleep(0.2)
    status, body = until_settled(bearer([change("REMOVE", at(11))]))
    worker.join()
    stack.sandbox.clear_faults()
    assert result == [503] and status == 200, body
    status, body, _ = invoke(redelivered(older))  # Segment's retry of the older ADD: stale now
    assert status == 200 and body["duplicate"] == 1
    assert not is_member(stack)


# -- costs and fallbacks ---------------------------------------------------------------------------
def test_changes_are_read_in_one_batch_and_claimed_in_one_transaction_per_hundred(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    for index in range(150):
        stack.sandbox.add_segment(support.ORG, "users", f"seg_{index:03d}")
    events = [support.group("ADD", segment=f"seg_{i:03d}", timestamp=at(10)) for i in range(150)]
    proxy.operations.clear()
    status, body, _ = invoke(bearer(events))
    assert status == 200 and body["delivered"] == 150, body
    wait_for_release(proxy)
    ops = proxy.operations
    assert ops.count("BatchGetItem") == 2  # 100 + 50 records
    assert ops.count("TransactWriteItems") == 2  # claims (100 + 50); no record is written again
    assert ops.count("PutItem") == 2  # the idempotency record, and the one item releasing 150 leases


def test_a_request_claims_its_batches_of_a_hundred_records_at_once_not_one_after_another(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    for index in range(250):
        stack.sandbox.add_segment(support.ORG, "users", f"seg_{index:03d}")
    events = [support.group("ADD", segment=f"seg_{i:03d}", timestamp=at(10)) for i in range(250)]
    proxy.only, proxy.slow_s = "TransactWriteItems", 0.3  # each claim transaction takes a while
    proxy.set_mode("slow")
    status, body, _ = invoke(bearer(events))
    assert status == 200 and body["delivered"] == 250, body
    assert proxy.operations.count("TransactWriteItems") == 3  # 100 + 100 + 50 records
    assert proxy.peak_in_flight["TransactWriteItems"] >= 2


def wait_for_release(proxy: Any) -> None:
    """Until the request's "done" item is written (in the background, after the answer)."""
    deadline = time.monotonic() + 10
    while proxy.operations.count("PutItem") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_done_request_releases_its_leases_so_the_next_change_is_claimed_without_waiting(
    stack, aws_proxy, capsys
):
    proxy = aws_proxy("dynamodb")
    proxy.operations.clear()
    assert invoke(bearer([change("ADD", at(10))]))[0] == 200
    wait_for_release(proxy)
    record = membership_record(stack)
    assert record["s:member"].startswith(at(10)) and record["owner"]  # left as claimed, lease and all
    proxy.operations.clear()
    capsys.readouterr()
    status, body, _ = invoke(bearer([change("REMOVE", at(11))]))
    assert status == 200 and body["delivered"] == 1 and not is_member(stack), body
    # the record, the lease owner's "done" item, then the record again, as that request left it
    assert proxy.operations.count("BatchGetItem") == 3
    assert '"OrderingBusy"' not in capsys.readouterr().out


def test_a_request_whose_undo_failed_keeps_its_leases_rather_than_release_a_record_not_put_back(
    stack, aws_proxy
):
    import boto3

    from handler.ordering import Claim, Lease, OrderingStore, resolve, stamp

    proxy = aws_proxy("dynamodb")
    store = OrderingStore(stack.state_table, 3600, boto3.client("dynamodb", endpoint_url=proxy.url))
    refused, taken = (
        Claim(record_key("test", name), {"member": "ADD"}, stamp(at(10), name)) for name in "ab"
    )
    lease = Lease.for_seconds(5.0)
    resolve([refused, taken])
    store.claim([refused, taken], lease)
    assert (refused.verdict, taken.verdict) == ("claimed", "claimed")
    proxy.only = "TransactWriteItems"
    proxy.set_mode("error")
    store.settle([refused], [taken], lease)
    proxy.set_mode("pass")
    done = boto3.client("dynamodb").get_item(
        TableName=stack.state_table, Key={"id": {"S": LEASE_PREFIX + lease.token}}
    )
    assert "Item" not in done
    newer = Claim(taken.key, {"member": "REMOVE"}, stamp(at(11), "c"))
    resolve([newer])
    store.claim([newer], Lease.for_seconds(5.0), wait_until_ms=0)
    assert newer.verdict == "busy"  # the lease stands until it runs out


def cancelled(codes: list[str]) -> tuple[int, dict[str, Any]]:
    """DynamoDB's answer to a TransactWriteItems it cancelled, one reason per item."""
    return 400, {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": [{"Code": code, "Message": code} for code in codes],
    }


def is_undo(operation: str, body: dict[str, Any]) -> bool:
    """A settle's put-back transaction: its puts carry no lease (a claim's always do)."""
    items = body.get("TransactItems", []) if operation == "TransactWriteItems" else []
    return bool(items) and all("lease" not in item["Put"]["Item"] for item in items)


@pytest.mark.parametrize("code", ["ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"])
def test_an_undo_dynamodb_keeps_cancelling_keeps_the_leases_instead_of_releasing_a_record_not_put_back(
    stack, aws_proxy, code
):
    proxy = aws_proxy("dynamodb")
    other = support.group("ADD", userId="cust-other", timestamp=at(9))
    assert invoke(bearer([change("ADD", at(9)), other]))[0] == 200
    undos: list[str] = []

    def cancel_undos(operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if not is_undo(operation, body):
            return None
        undos.append(operation)
        return cancelled([code] * len(body["TransactItems"]))

    proxy.answer = cancel_undos
    # SMC refuses MEMBER's REMOVE for good (its claim must be undone) and takes the other one
    stack.sandbox.inject(
        Fault(result_code="Failed", invalid_rows=[0], method="DELETE", path_contains=REMOVE_PATH)
    )
    status, body, _ = invoke(
        bearer([change("REMOVE", at(11)), support.group("REMOVE", userId="cust-other", timestamp=at(11))])
    )
    stack.sandbox.clear_faults()
    proxy.answer = None
    assert status == 200 and body["rejected"] == 1 and body["delivered"] == 1, body
    assert len(undos) == 3  # tried again, then given up on
    assert membership_record(stack)["s:member"].startswith(at(11))  # not put back...
    status, body, _ = invoke(bearer([change("REMOVE", at(10))]))  # newer than the ADD SMC holds
    assert status == 503 and outcome_of(body, body["failures"][0]["messageId"]) == ("retried", BUSY), body
    assert is_member(stack)  # ...so its lease stands: nothing is judged against the refused REMOVE


def test_an_undo_cancelled_once_is_tried_again_and_put_back(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    assert invoke(bearer([change("ADD", at(9))]))[0] == 200
    undos: list[str] = []

    def cancel_first_undo(operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if not is_undo(operation, body) or undos:
            return None
        undos.append(operation)
        return cancelled(["TransactionConflict"] * len(body["TransactItems"]))

    proxy.answer = cancel_first_undo
    stack.sandbox.inject(
        Fault(result_code="Failed", invalid_rows=[0], method="DELETE", path_contains=REMOVE_PATH)
    )
    status, body, _ = invoke(bearer([change("REMOVE", at(11))]))
    stack.sandbox.clear_faults()
    assert status == 400 and body["rejected"] == 1, body  # refused for good: Segment drops it
    assert undos and membership_record(stack)["s:member"].startswith(at(9))
    status, body, _ = invoke(bearer([change("REMOVE", at(10))]))
    assert status == 200 and body["delivered"] == 1 and not is_member(stack), body


def test_a_change_meeting_a_lease_released_after_an_undo_is_judged_by_the_record_put_back(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    other = "cust-other"
    assert (
        invoke(bearer([change("ADD", at(9)), support.group("ADD", userId=other, timestamp=at(9))]))[0] == 200
    )
    claims: list[str] = []
    stretched: list[str] = []

    def stretch_done_read(operation: str, body: dict[str, Any]) -> None:
        # C's moment between its read of the records and its read of the done items (the first
        # such read after B's claim), made long enough for B to undo its record and finish.
        if operation == "TransactWriteItems" and not is_undo(operation, body):
            claims.append(operation)
        keys = [key["id"]["S"] for table in body.get("RequestItems", {}).values() for key in table["Keys"]]
        if claims and not stretched and keys and all(key.startswith(LEASE_PREFIX) for key in keys):
            stretched.append(operation)
            time.sleep(0.6)
        return None

    # B: REMOVE at 11:00 of MEMBER (SMC refuses it for good: undone) and of `other` (taken: its
    # lease is released by B's done item); SMC takes 0.3 s
    stack.sandbox.inject(
        Fault(
            result_code="PartiallySucceeded",
            invalid_rows=[0],
            delay_s=0.3,
            method="DELETE",
            path_contains=REMOVE_PATH,
        )
    )
    answers: dict[str, Any] = {}
    b_events = [change("REMOVE", at(11)), support.group("REMOVE", userId=other, timestamp=at(11))]
    b = threading.Thread(target=lambda: answers.setdefault("B", invoke(bearer(b_events))))
    proxy.answer = stretch_done_read
    b.start()
    time.sleep(0.15)
    # C: REMOVE at 10:00 of MEMBER, read while B's claim is on the record
    status, body, _ = invoke(bearer([change("REMOVE", at(10))]))
    b.join()
    stack.sandbox.clear_faults()
    assert stretched and answers["B"][1]["rejected"] == 1
    # Newer than the ADD SMC holds: applied (or retried), never dropped as stale
    assert status == 200 and body["delivered"] == 1, body
    assert not is_member(stack)


def test_rows_that_overwrite_nothing_never_touch_the_ordering_records(stack, aws_proxy):
    proxy = aws_proxy("dynamodb")
    proxy.operations.clear()
    events = [support.track(), support.identify(), support.page(), support.delete(userId="gone")]
    status, _, _ = invoke(bearer(events))
    assert status == 200
    assert sorted(proxy.operations) == ["PutItem", "UpdateItem"]  # the idempotency record only


def test_ordering_store_down_applies_the_change_unordered_and_counts_it(stack, aws_proxy, capsys):
    proxy = aws_proxy("dynamodb")
    proxy.only = "BatchGetItem"  # the ordering records; the idempotency record still works
    proxy.set_mode("error")
    capsys.readouterr()
    status, body, _ = invoke(bearer([change("ADD", at(10))]))
    assert status == 200 and body["delivered"] == 1 and is_member(stack)
    assert '"OrderingStoreUnavailable":[1.0]' in capsys.readouterr().out


def test_ordering_is_off_without_a_state_table(stack, monkeypatch):
    monkeypatch.setenv("STATE_TABLE", "")
    stack.set_env()
    assert invoke(bearer([change("ADD", at(11))]))[0] == 200
    status, body, _ = invoke(bearer([change("REMOVE", at(10))]))
    assert status == 200 and body["delivered"] == 1 and not is_member(stack)  # today's behaviour
