"""Queued mode: webhook → SQS (moto over HTTP) → consumer → SMC sandbox, with DLQ and redrive.

Time is simulated (`clock`): the consumer's clock and moto's SQS clock (delays, visibility) move
together, so a day-long SMC outage runs in seconds and no test sleeps.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest

from sandbox import Fault
from tests import support
from tests.support import FakeContext, api_event, invoke, sqs_event

MAX_RECEIVES = 3  # the queue's redrive policy: SQS dead-letters a message on its 4th receive
DAY = 86400


class Clock:
    """Simulated time: real time plus an offset that only `advance` moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One clock for the consumer (handler.requeue.now) and for moto's SQS, which runs in this
    process (ThreadedMotoServer) and reads its time through these two functions."""
    import moto.sqs.models as sqs_models

    from handler import requeue

    fake = Clock()
    real_unix_time = sqs_models.unix_time

    def unix_time(dt: Any = None) -> float:
        return real_unix_time(dt) if dt is not None else fake()

    monkeypatch.setattr(requeue, "now", fake)
    monkeypatch.setattr(sqs_models, "unix_time", unix_time)
    monkeypatch.setattr(sqs_models, "unix_time_millis", lambda dt=None: unix_time(dt) * 1000)
    return fake


class Queues:
    """The delivery queue (with the template's redrive policy) and its dead-letter queue, and a
    stand-in for Lambda's SQS poller."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sqs = boto3.client("sqs")
        suffix = uuid.uuid4().hex[:8]
        retention = str(14 * DAY)  # as template.yaml
        self.dlq_url = self.sqs.create_queue(
            QueueName=f"dlq-{suffix}", Attributes={"MessageRetentionPeriod": retention}
        )["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES})
        self.url = self.sqs.create_queue(
            QueueName=f"delivery-{suffix}",
            Attributes={
                "VisibilityTimeout": "360",
                "MessageRetentionPeriod": retention,
                "RedrivePolicy": policy,
            },
        )["QueueUrl"]
        self.invocations = 0

    def depth(self, url: str | None = None) -> int:
        """Messages in the queue, visible or not (delayed, in flight)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=names)["Attributes"]
        return sum(int(attrs.get(name, 0)) for name in names)

    def receive(self, url: str | None = None, visibility: int = 360) -> list[dict]:
        answer = self.sqs.receive_message(
            QueueUrl=url or self.url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=visibility,
        )
        return answer.get("Messages", [])

    def letters(self) -> list[dict]:
        """The dead-letter queue's messages, bodies decoded (left in the queue)."""
        found: list[dict] = []
        while batch := self.receive(self.dlq_url, visibility=600):
            found.extend(batch)
        for message in found:
            self.sqs.change_message_visibility(
                QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return [dict(m, decoded=json.loads(m["Body"]) if m["Body"].startswith("{") else None) for m in found]

    def poll_once(self, batch_size: int = 10) -> tuple[int, list[str]]:
        """Receive a batch (up to `batch_size` messages, the template's BatchSize is 100), run the
        consumer, delete what it reports done (as Lambda's poller does)."""
        from handler.consumer import lambda_handler

        batch: list[dict] = []
        while len(batch) < batch_size and (received := self.receive()):
            batch.extend(received)
        if not batch:
            return 0, []
        self.invocations += 1
        answer = lambda_handler(sqs_event(batch), FakeContext(timeout_ms=60_000))
        failed = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(batch)
            if m["MessageId"] not in failed
        ]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=done)
        return len(batch), failed

    def drain(self, rounds: int = 20, batch_size: int = 10) -> None:
        """Poll until nothing is visible now (no time passes)."""
        for _ in range(rounds):
            received, _ = self.poll_once(batch_size)
            if not received:
                return

    def run_for(self, seconds: float, step: float = 60, batch_size: int = 10) -> None:
        """Let `seconds` of simulated time pass, the poller draining the queue at every `step`."""
        elapsed = 0.0
        while elapsed < seconds:
            self.drain(50, batch_size)
            self.clock.advance(step)
            elapsed += step
        self.drain(50, batch_size)


@pytest.fixture
def queued(stack, clock):
    queues = Queues(clock)
    stack.set_env(
        DELIVERY_MODE="queued",
        DELIVERY_QUEUE_URL=queues.url,
        DEAD_LETTER_QUEUE_URL=queues.dlq_url,
        MAX_EVENT_AGE_SECONDS=str(4 * DAY),
    )
    yield queues
    stack.set_env(
        DELIVERY_MODE="sync", DELIVERY_QUEUE_URL="", DEAD_LETTER_QUEUE_URL="", MAX_EVENT_AGE_SECONDS=""
    )


def loaded_rows(stack, list_name: str = support.EVENTS_LIST) -> int:
    """Rows SMC took in successful loads into `list_name` (counts a row loaded twice twice)."""
    return sum(
        call.rows or 0
        for call in stack.smc_calls(f"/lists/{list_name}/data/load")
        if call.status == 200 and not call.fault
    )


def all_types() -> list[dict]:
    return [
        support.identify(),
        support.track(),
        support.page(),
        support.screen(),
        support.alias(),
        support.group("ADD", userId="cust-q"),
    ]


def test_webhook_answers_after_enqueueing_without_calling_smc(stack, queued):
    status, body, _ = invoke(api_event(all_types(), signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200 and body["enqueued"] == 6 and body["delivered"] == 0
    assert stack.smc_calls("/") == []
    assert queued.depth() == 1  # six events packed into one message


def test_every_call_type_reaches_smc_through_the_queue(stack, queued):
    events = all_types()
    invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    invoke(api_event(support.delete(userId=events[1]["userId"])))
    queued.drain()
    ids = {row["MESSAGE_ID"] for row in stack.rows()}
    assert ids == {e["messageId"] for e in events[:5] if e["userId"] != events[1]["userId"]} | {
        e["messageId"] for e in events[:5] if e["userId"] != events[1]["userId"]
    }
    assert events[1]["messageId"] not in ids  # deleted by the delete event
    assert [m["CUSTOMER_ID"] for m in stack.members()] == ["cust-q"]
    assert queued.depth() == 0 and queued.depth(queued.dlq_url) == 0


def test_a_thousand_events_fit_in_few_send_calls_and_one_smc_call_per_target(stack, queued, capsys):
    events = [support.track() for _ in range(900)] + [
        support.group("ADD", userId=f"c{i}") for i in range(100)
    ]
    capsys.readouterr()
    status, body, _ = invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200 and body["enqueued"] == 1000
    metrics = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"QueueSendCalls"' in line
    ]
    assert (metrics and metrics[0]["QueueSendCalls"] == [1.0]) or metrics[0]["QueueSendCalls"][0] <= 3
    for _ in range(5):
        queued.poll_once()
    assert len(stack.rows()) == 900 and len(stack.members()) == 100
    assert queued.depth() == 0


def test_redelivered_webhook_request_is_not_enqueued_twice(stack, queued):
    event = api_event([support.track(), support.identify()], signature=False, bearer=support.BEARER_TOKEN)
    invoke(event)
    status, _, headers = invoke(dict(event, requestContext={**event["requestContext"], "requestId": "again"}))
    assert status == 200 and headers.get("X-Idempotent-Replay") == "true"
    assert queued.depth() == 1


def test_failed_enqueue_is_retryable_for_segment(stack, queued):
    stack.set_env(DELIVERY_QUEUE_URL=queued.url + "-missing")
    status, body, headers = invoke(api_event(support.track()))
    assert status == 503 and body["retried"] == 1 and "Retry-After" in headers
    assert body["failures"][0]["reason"].startswith("queue_unavailable")


def test_a_day_long_smc_outage_then_recovery_delivers_every_event_exactly_once_and_dead_letters_none(
    stack, queued
):
    events = [support.track() for _ in range(5)]
    members = [support.group("ADD", userId=f"out-{i}") for i in range(3)]
    invoke(api_event(events[:3] + members[:1], signature=False, bearer=support.BEARER_TOKEN))
    invoke(api_event(events[3:] + members[1:], signature=False, bearer=support.BEARER_TOKEN))
    # Retry-After: 0 keeps the client's own retries instant; the queue's back-off is what is tested.
    stack.sandbox.inject(Fault(status=503, retry_after="0", times=-1, path_contains="/data"))
    queued.run_for(DAY, step=300)
    assert stack.rows() == [] and stack.members() == []
    assert queued.depth(queued.dlq_url) == 0  # maxReceiveCount is 3: over 90 tries used none of it
    assert 0 < queued.depth() <= 2  # two messages, each waiting out its back-off
    queued.clock.advance(900)
    waiting = queued.receive(visibility=0)
    tries = [json.loads(m["Body"])["attempt"] for m in waiting]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in waiting] == ["1", "1"]
    # The back-off is capped at 15 minutes, on the quarter hour: 96 tries a day for each message,
    # plus the first few (a 30 s retry would be 2,880).
    assert all(DAY // 900 <= attempt <= 6 + DAY // 900 for attempt in tries), tries

    stack.sandbox.clear_faults()
    stack.sandbox.clear_requests_log()
    queued.run_for(900, step=60)  # the longest back-off: every event is back within it
    assert sorted(r["MESSAGE_ID"] for r in stack.rows()) == sorted(e["messageId"] for e in events)
    assert loaded_rows(stack) == len(events)  # each row loaded once: none applied twice
    assert sorted(m["CUSTOMER_ID"] for m in stack.members()) == ["out-0", "out-1", "out-2"]
    assert len(stack.smc_calls("/data")) <= 4  # at most one call per target per message
    assert queued.depth() == 0 and queued.depth(queued.dlq_url) == 0


def test_message_delivered_twice_by_sqs_makes_no_second_row(stack, queued):
    from handler.consumer import lambda_handler

    invoke(api_event(support.track()))
    message = queued.receive()[0]
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "eventSource": "aws:sqs",
    }
    for _ in range(2):
        answer = lambda_handler({"Records": [record]}, FakeContext())
        assert answer["batchItemFailures"] == []
    assert len(stack.rows()) == 1


def test_only_the_events_that_failed_come_back_as_a_new_delayed_message(stack, queued):
    invoke(api_event(support.group("ADD", segment="no_such_segment")))
    track = support.track()
    invoke(api_event(track))
    received, failed = queued.poll_once()
    assert received == 2 and failed == []  # both old messages are done with
    assert [r["MESSAGE_ID"] for r in stack.rows()] == [track["messageId"]]
    assert queued.receive() == []  # the retry waits out its back-off
    queued.clock.advance(60)
    (retry,) = queued.receive()
    body = json.loads(retry["Body"])
    assert [e["groupId"] for e in body["events"]] == ["no_such_segment"]
    assert body["attempt"] == 1 and retry["Attributes"]["ApproximateReceiveCount"] == "1"


def test_rejected_row_goes_to_the_dead_letter_queue_at_once_with_its_reason(stack, queued):
    support.narrow_event_name(stack.sandbox)
    bad = support.track("x" * support.TOO_LONG_FOR_NARROW)  # SMC refuses the row
    invoke(api_event([bad, support.track()], signature=False, bearer=support.BEARER_TOKEN))
    queued.poll_once()  # one pass: no retries of a row SMC refused for good
    assert len(stack.rows()) == 1 and queued.depth() == 0
    letters = queued.receive(queued.dlq_url)
    assert len(letters) == 1
    body = json.loads(letters[0]["Body"])
    assert body["events"][0]["messageId"] == bad["messageId"]
    assert "MaxStringLengthExceeded" in body["failure"]["reason"]
    assert "MaxStringLengthExceeded" in letters[0]["MessageAttributes"]["failure_reason"]["StringValue"]


def test_events_older_than_max_event_age_go_to_the_dead_letter_queue_as_expired_and_redrive_cleanly(
    stack, queued
):
    from handler.queue import redrive

    stack.set_env(SMC_EVENTS_LIST="events_v2")  # not created yet in SMC: 404 on every try
    events = [support.track(), support.identify()]
    invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    queued.run_for(4 * DAY - 3600, step=900)
    assert queued.depth(queued.dlq_url) == 0 and queued.depth() == 1  # still retried after 3 days 23 h
    queued.run_for(2 * 3600, step=900)
    assert queued.depth() == 0
    letters = queued.letters()
    assert sorted(m["decoded"]["events"][0]["messageId"] for m in letters) == sorted(
        e["messageId"] for e in events
    )
    reason = letters[0]["decoded"]["failure"]["reason"]
    assert reason.startswith("expired: not delivered within 4 days; last failure: smc_target_not_found")
    assert letters[0]["MessageAttributes"]["failure_reason"]["StringValue"].startswith("expired")
    # the admin creates the list; the operator redrives: the events get a new age window
    from handler.schema import EVENTS_LIST_COLUMNS

    stack.sandbox.add_list(support.ORG, "events_v2", [c.as_field() for c in EVENTS_LIST_COLUMNS])
    result = redrive(queued.sqs, queued.dlq_url, queued.url, wait_s=0)
    assert result.moved == 2 and result.complete
    queued.drain()
    rows = stack.rows("events_v2")
    assert sorted(r["MESSAGE_ID"] for r in rows) == sorted(e["messageId"] for e in events)
    assert queued.depth(queued.dlq_url) == 0 and queued.depth() == 0


def test_unreadable_message_is_dead_lettered_unchanged(stack, queued):
    queued.sqs.send_message(QueueUrl=queued.url, MessageBody="not json at all")
    queued.drain()
    letters = queued.receive(queued.dlq_url)
    assert [m["Body"] for m in letters] == ["not json at all"]
    assert letters[0]["MessageAttributes"]["failure_reason"]["StringValue"] == "unreadable queue message"


def test_smc_throttling_holds_the_events_back_for_at_least_its_retry_after(stack, queued):
    invoke(api_event(support.track()))
    stack.sandbox.inject(Fault(status=429, retry_after="120", times=-1, path_contains="/data"))
    _, failed = queued.poll_once()
    assert failed == []
    assert len(stack.smc_calls("/data")) == 1  # not waited out in the function: the queue waits
    stack.sandbox.clear_faults()
    queued.clock.advance(119)
    assert queued.receive() == []  # hidden for Retry-After, not retried at once
    queued.clock.advance(2)
    queued.drain()
    assert len(stack.rows()) == 1


def test_sustained_throttling_delivers_every_event_once_when_it_ends_and_dead_letters_none(stack, queued):
    events = [support.track() for _ in range(4)]
    for event in events:
        invoke(api_event(event))
    stack.sandbox.inject(Fault(status=429, retry_after="1", times=-1, path_contains="/data"))
    queued.run_for(6 * 3600, step=300)
    assert stack.rows() == [] and queued.depth(queued.dlq_url) == 0
    stack.sandbox.clear_faults()
    stack.sandbox.clear_requests_log()
    queued.run_for(900, step=60)
    assert sorted(r["MESSAGE_ID"] for r in stack.rows()) == sorted(e["messageId"] for e in events)
    assert loaded_rows(stack) == len(events)
    assert queued.depth() == 0 and queued.depth(queued.dlq_url) == 0


def test_once_smc_throttles_no_other_call_of_the_batch_starts(stack, queued):
    events = [support.track(), support.group("ADD", userId="t-1")]
    invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    stack.sandbox.inject(Fault(status=429, retry_after="30", times=-1, path_contains="/data"))
    queued.poll_once()
    assert len(stack.smc_calls("/data")) == 1  # the second target is not called
    stack.sandbox.clear_faults()
    queued.clock.advance(29)
    assert queued.receive() == []  # both wait for the throttling to pass (Retry-After: 30)...
    queued.clock.advance(17)  # ...to the first step's grid at most (30 s steps: 15-45 s)
    (retry,) = queued.receive(visibility=0)
    assert len(json.loads(retry["Body"])["events"]) == 2


def test_redrive_command_moves_dead_letters_back_for_delivery(stack, queued, capsys):
    from handler.cli import main
    from handler.schema import EVENTS_LIST_COLUMNS

    stack.set_env(SMC_EVENTS_LIST="events_v3", MAX_EVENT_AGE_SECONDS="3600")
    event = support.track()
    invoke(api_event(event))
    queued.run_for(3600, step=300)
    assert queued.depth(queued.dlq_url) == 1 and queued.depth() == 0
    stack.sandbox.add_list(support.ORG, "events_v3", [c.as_field() for c in EVENTS_LIST_COLUMNS])
    code = main(["redrive", "--dlq-url", queued.dlq_url, "--queue-url", queued.url, "--wait-seconds", "0"])
    assert code == 0 and "moved 1 message" in capsys.readouterr().out
    # The redriven event has a new MaxEventAge window: one more failure retries it, not expires it.
    stack.sandbox.inject(Fault(status=503, retry_after="0", times=-1, path_contains="/data"))
    queued.drain()
    assert queued.depth(queued.dlq_url) == 0 and queued.depth() == 1
    stack.sandbox.clear_faults()
    queued.clock.advance(60)
    queued.drain()
    assert [r["MESSAGE_ID"] for r in stack.rows("events_v3")] == [event["messageId"]]


def test_redrive_command_reports_and_fails_on_messages_it_could_not_move(stack, queued, capsys):
    from handler.cli import main

    for _ in range(3):
        queued.sqs.send_message(QueueUrl=queued.dlq_url, MessageBody="x" * 100)
    missing = queued.url + "-gone"
    code = main(["redrive", "--dlq-url", queued.dlq_url, "--queue-url", missing, "--wait-seconds", "0"])
    out = capsys.readouterr().out
    assert code == 75
    assert "moved 0 message(s)" in out and "3 message(s) the delivery queue refused" in out
    assert "redrive stopped: writing to the delivery queue failed" in out
    queued.clock.advance(301)
    assert queued.depth(queued.dlq_url) == 3  # nothing lost: all still in the dead-letter queue


def test_redrive_command_needs_both_queue_urls(capsys, monkeypatch):
    from handler.cli import main

    monkeypatch.delenv("DELIVERY_QUEUE_URL", raising=False)
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL", raising=False)
    assert main(["redrive", "--dlq-url", "http://x"]) == 2
    assert "--queue-url" in capsys.readouterr().err


def test_events_with_characters_sqs_refuses_are_enqueued_as_ascii_json(stack, queued):
    event = support.track(properties={"note": "bad \ud800 and \uffff chars"})
    status, body, _ = invoke(api_event(event, signature=False, bearer=support.BEARER_TOKEN))
    assert status == 200 and body["enqueued"] == 1
    message = queued.receive(visibility=0)[0]["Body"]
    assert message.isascii()
    assert json.loads(message)["events"][0]["properties"]["note"] == "bad \ud800 and \uffff chars"


def test_the_consumer_never_applies_a_change_older_than_one_applied_since(stack, queued):
    newer = support.group("REMOVE", userId="cust-q", timestamp="2026-11-27T11:00:00.000Z")
    older = support.group("ADD", userId="cust-q", timestamp="2026-11-27T10:00:00.000Z")
    invoke(api_event(support.group("ADD", userId="cust-q", timestamp="2026-11-27T09:00:00.000Z")))
    queued.drain()
    invoke(api_event(newer))
    queued.drain()
    assert "cust-q" not in {m["CUSTOMER_ID"] for m in stack.members()}
    stack.sandbox.clear_requests_log()
    invoke(api_event(older))  # arrives late: queued, then found stale by the consumer
    queued.drain()
    assert stack.smc_calls("/segments/vip/data/load") == []
    assert "cust-q" not in {m["CUSTOMER_ID"] for m in stack.members()}
    assert queued.depth() == 0 and queued.depth(queued.dlq_url) == 0


def test_each_event_keeps_the_time_its_own_request_arrived_through_the_queue(stack, queued):
    first, second = support.track(), support.track()
    for event, arrived in ((first, "2026-11-27T10:00:00.000Z"), (second, "2026-11-27T11:30:00.000Z")):
        del event["receivedAt"]  # so the arrival time is what the row records
        request = api_event(event)
        request["requestContext"]["timeEpoch"] = int(
            __import__("datetime").datetime.fromisoformat(arrived).timestamp() * 1000
        )
        invoke(request)
    received, _ = queued.poll_once()
    assert received == 2  # one consumer batch holding both requests' messages
    by_id = {row["MESSAGE_ID"]: row["RECEIVED_AT"] for row in stack.rows()}
    assert by_id[first["messageId"]].startswith("2026-11-27T10:00:00")
    assert by_id[second["messageId"]].startswith("2026-11-27T11:30:00")


def test_a_message_whose_retry_cannot_be_written_stays_in_the_queue(stack, queued):
    invoke(api_event(support.track()))
    stack.sandbox.inject(Fault(status=503, retry_after="0", times=-1, path_contains="/data"))
    stack.set_env(DELIVERY_QUEUE_URL=queued.url + "-gone")  # SendMessage fails; receive still works
    _, failed = queued.poll_once()
    assert len(failed) == 1  # handed back to SQS instead of being lost
    stack.set_env(DELIVERY_QUEUE_URL=queued.url)
    stack.sandbox.clear_faults()
    queued.clock.advance(361)
    queued.drain()
    assert len(stack.rows()) == 1 and queued.depth() == 0


def test_a_backed_off_backlog_costs_a_few_smc_calls_per_target_on_recovery(stack, queued):
    """The figure docs/deploying.md (What it survives) quotes: 40 messages (1,000 events, to the
    events list and one segment) held back by an hour's outage, then SMC recovers; Lambda's
    poller takes up to 100 messages per invocation, every 5 s (its batching window)."""
    for n in range(40):
        events = [support.track() for _ in range(24)] + [support.group("ADD", userId=f"backlog-{n}")]
        invoke(api_event(events, signature=False, bearer=support.BEARER_TOKEN))
    stack.sandbox.inject(Fault(status=503, retry_after="0", times=-1, path_contains="/data"))
    queued.run_for(3600, step=60, batch_size=100)
    assert stack.rows() == [] and queued.depth() == 40
    stack.sandbox.clear_faults()
    stack.sandbox.clear_requests_log()
    queued.run_for(900, step=5, batch_size=100)
    assert loaded_rows(stack) == 960 and len(stack.members()) == 40  # each row exactly once
    calls = len(stack.smc_calls("/data"))
    # Backed-off retries come back on the quarter hour, all 40 at once (handler.requeue aligns
    # them): one consumer batch, one call per target, as the same events cost when fresh. (With
    # a jittered back-off they came back one by one: 76 calls.)
    assert calls == 2
    assert queued.depth() == 0 and queued.depth(queued.dlq_url) == 0


def test_a_dead_letter_queue_that_refuses_keeps_the_rejected_event_queued_without_redoing_the_rest(
    stack, queued
):
    support.narrow_event_name(stack.sandbox)
    bad = support.track("x" * support.TOO_LONG_FOR_NARROW)  # SMC refuses the row for good
    good, waiting = support.track(), support.group("ADD", segment="no_such_segment")
    invoke(api_event([bad, good, waiting], signature=False, bearer=support.BEARER_TOKEN))
    stack.set_env(DEAD_LETTER_QUEUE_URL=queued.dlq_url + "-gone")
    _, failed = queued.poll_once()
    assert failed == []  # the old message is done: nothing in it is redone
    assert [r["MESSAGE_ID"] for r in stack.rows()] == [good["messageId"]]
    stack.set_env(DEAD_LETTER_QUEUE_URL=queued.dlq_url)
    queued.clock.advance(900)
    bodies = [json.loads(m["Body"]) for m in queued.receive(visibility=0)]
    held = sorted(event["messageId"] for body in bodies for event in body["events"])
    assert held == sorted([bad["messageId"], waiting["messageId"]])  # each in exactly one message
    stack.sandbox.clear_requests_log()
    queued.drain()
    again = stack.smc_calls(f"/lists/{support.EVENTS_LIST}/data/load")
    assert [call.rows for call in again] == [1]  # only the refused row is tried again, not the good one
    assert [m["decoded"]["events"][0]["messageId"] for m in queued.letters()] == [bad["messageId"]]


def test_a_throttled_transactional_send_stops_the_batch_and_waits_for_retry_after(stack, queued):
    from tests.test_profiles import FIELDS

    stack.set_env(
        SMC_PROFILE_LIST="users",
        SMC_PROFILE_KEY="CUSTOMER_ID",
        SMC_PROFILE_FIELDS=json.dumps(FIELDS),
        SMC_TRANSACTIONAL_EVENTS=json.dumps({"Order Completed": "order_confirmation"}),
        SMC_TRANSACTIONAL_LANGUAGE="EN",
    )
    invoke(api_event(support.identify(userId="tq-1", traits={"email": "tq-1@example.com"})))
    queued.drain()
    order = support.track("Order Completed", userId="tq-1", properties={"orderId": "o-1"})
    invoke(api_event([order, support.delete(userId="tq-gone")], signature=False, bearer=support.BEARER_TOKEN))
    stack.sandbox.clear_requests_log()
    stack.sandbox.inject(Fault(status=429, retry_after="600", times=-1, path_contains="/send"))
    queued.poll_once()
    # Deletions come after the sends: held once the send was throttled.
    assert [call for call in stack.smc_calls("/data") if call.method == "DELETE"] == []
    stack.sandbox.clear_faults()
    queued.clock.advance(599)
    assert queued.receive() == []  # the send's Retry-After, not the 30 s first step
    queued.clock.advance(2)
    queued.drain()
    assert len(stack.sandbox.messages(support.ORG, "order_confirmation")) == 1
    assert queued.depth() == 0 and queued.depth(queued.dlq_url) == 0


def test_a_message_with_a_garbled_age_still_expires(stack, queued):
    stack.set_env(SMC_EVENTS_LIST="events_never", MAX_EVENT_AGE_SECONDS="3600")
    body = {"v": 1, "receivedAt": "yesterday", "firstSeen": "yesterday", "attempt": 10**30}
    body["events"] = [support.track()]
    queued.sqs.send_message(QueueUrl=queued.url, MessageBody=json.dumps(body))
    queued.run_for(3600 + 900, step=300)
    (letter,) = queued.letters()
    assert letter["decoded"]["failure"]["reason"].startswith("expired")
