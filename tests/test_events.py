"""Per-event rules: validation, stable ids, opt-outs, allowlist, toggles."""

from __future__ import annotations

import pytest

from handler.events import InvalidEvent, admit, derive_message_id, iso_utc, validate_event
from handler.settings import load_settings
from tests import support
from tests.test_settings import BASE

NOW = "2026-11-27T12:00:00.000Z"
SETTINGS = load_settings(BASE)


def test_every_call_type_validates_with_a_full_segment_payload():
    for raw in (
        support.identify(),
        support.track(),
        support.page(),
        support.screen(),
        support.alias(),
        support.group(),
        support.delete(),
    ):
        assert validate_event(0, raw, NOW).type == raw["type"]


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"type": "launch", "userId": "u"}, "type must be one of"),
        ({"type": "track", "event": "A"}, "userId or anonymousId"),
        ({"type": "track", "userId": "u"}, "track requires event"),
        ({"type": "track", "userId": "u", "event": "  "}, "track requires event"),
        ({"type": "alias", "userId": "u"}, "alias requires previousId"),
        ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "alias requires previousId and userId"),
        ({"type": "group", "userId": "u", "traits": {"matchkey": "MAIL", "userlist": "users"}}, "groupId"),
        ({"type": "group", "userId": "u", "groupId": "vip", "traits": {"userlist": "users"}}, "matchkey"),
        ({"type": "group", "userId": "u", "groupId": "vip", "traits": {"matchkey": "MAIL"}}, "userlist"),
        (
            {
                "type": "group",
                "anonymousId": "a",
                "groupId": "vip",
                "traits": {"matchkey": "M", "userlist": "l"},
            },
            "userId",
        ),
        (
            {
                "type": "group",
                "userId": "u",
                "groupId": "vip",
                "traits": {"matchkey": "M", "userlist": "l", "method": "TOGGLE"},
            },
            "ADD or REMOVE",
        ),
        (
            {"type": "group", "userId": "u", "groupId": "../x", "traits": {"matchkey": "M", "userlist": "l"}},
            "api name",
        ),
        (
            {
                "type": "group",
                "userId": "u",
                "groupId": "vip",
                "traits": {"matchkey": "M", "userlist": "a/b?c=d"},
            },
            "api name",
        ),
        (
            {
                "type": "group",
                "userId": "u",
                "groupId": "vip",
                "traits": {"matchkey": "M%2F", "userlist": "l"},
            },
            "field name",
        ),
        ({"type": "track", "userId": "u", "event": "A", "messageId": 5}, "messageId"),
        ({"type": "track", "userId": "u", "event": "A", "messageId": "m" * 101}, "messageId"),
        ({"type": "track", "userId": True, "event": "A"}, "userId must be a string"),
        ({"type": "track", "userId": "u", "event": "A", "properties": []}, "properties must be an object"),
        ({"type": "track", "userId": "u", "event": "A", "context": "x"}, "context must be an object"),
        ("not an object", "JSON object"),
    ],
)
def test_invalid_event_is_rejected_with_a_reason_naming_the_field(raw, message):
    with pytest.raises(InvalidEvent, match=message):
        validate_event(0, raw, NOW)


def test_group_method_is_case_insensitive_and_defaults_to_add():
    validate_event(0, support.group(method="remove"), NOW)
    validate_event(0, support.group(method=None), NOW)


def test_event_without_message_id_gets_a_stable_derived_id():
    raw = support.track()
    del raw["messageId"]
    first = validate_event(0, raw, NOW).message_id
    assert first == validate_event(3, dict(raw), "2030-01-01T00:00:00.000Z").message_id
    assert first.startswith("derived-") and len(first) <= 100
    assert derive_message_id({**raw, "event": "Other"}) != first


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ({"timestamp": "yesterday", "originalTimestamp": "2026-11-27T10:00:00Z"}, "2026-11-27T10:00:00.000Z"),
        (
            {"timestamp": 12, "originalTimestamp": None, "receivedAt": "2026-11-27T09:00:00Z"},
            "2026-11-27T09:00:00.000Z",
        ),
        ({"timestamp": "9999-12-31T23:59:59-23:59", "originalTimestamp": "x", "receivedAt": "y"}, NOW),
    ],
)
def test_an_unusable_timestamp_falls_back_to_received_at_then_to_arrival(times, expected):
    raw = support.track(**times)
    assert validate_event(0, raw, NOW).timestamp == expected


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ({"timestamp": "2026-11-27T12:59:00.000Z"}, "2026-11-27T12:59:00.000Z"),  # within the skew
        (
            {"timestamp": "9999-12-31T23:59:59.999Z", "receivedAt": "2026-11-27T11:59:59.000Z"},
            "2026-11-27T11:59:59.000Z",
        ),
        ({"timestamp": "2026-11-27T13:00:01.000Z", "receivedAt": "2026-11-27T13:00:01.000Z"}, NOW),
    ],
    ids=["slightly-ahead", "far-future", "received-at-ahead-too"],
)
def test_a_timestamp_too_far_after_arrival_orders_by_received_at_then_by_arrival(times, expected):
    event = validate_event(0, support.group(**times), NOW)
    assert event.order_time == expected
    assert event.timestamp == times["timestamp"]  # the events-list row keeps what the event said


def test_timestamps_are_normalised_to_utc_milliseconds():
    assert iso_utc("2026-11-27T11:15:30.123456+01:00") == "2026-11-27T10:15:30.123Z"
    assert iso_utc("2026-11-27T10:15:30Z") == "2026-11-27T10:15:30.000Z"
    raw = support.track(timestamp=None, originalTimestamp=None, receivedAt=None)
    assert validate_event(0, raw, NOW).timestamp == NOW


def test_numeric_user_id_is_accepted_as_text():
    assert validate_event(0, support.track(userId=12345), NOW).user_id == "12345"


@pytest.mark.parametrize(
    "integrations,filtered",
    [
        ({"Selligent Marketing Cloud": False}, True),
        ({"All": True, "Selligent Marketing Cloud": False}, True),
        # Segment routed it here whatever `All` says: only an explicit false opts out
        ({"All": False}, False),
        ({"All": False, "Webhooks": True}, False),
        ({"All": False, "Selligent Marketing Cloud": {}}, False),
        ({"All": False, "Selligent Marketing Cloud": True}, False),
        ({"All": True}, False),
        ({"Selligent Marketing Cloud": {"some": "option"}}, False),
        ({}, False),
    ],
)
def test_only_an_explicit_false_for_this_destination_filters_the_event(integrations, filtered):
    report, admitted = admit([support.track(integrations=integrations)], SETTINGS, NOW)
    assert (report.results[0].outcome == "filtered") is filtered
    assert len(admitted) == (0 if filtered else 1)


def test_track_allowlist_filters_other_track_events_only():
    settings = load_settings({**BASE, "SMC_ALLOWED_EVENTS": "Order Completed"})
    events = [support.track("Order Completed"), support.track("Page Scrolled"), support.identify()]
    report, admitted = admit(events, settings, NOW)
    assert [r.outcome for r in report.results] == [None, "filtered", None]
    assert report.results[1].reason == "track event not in SMC_ALLOWED_EVENTS"
    assert len(admitted) == 2


@pytest.mark.parametrize(
    "variable,factory",
    [
        ("SMC_SEND_PAGE_EVENTS", support.page),
        ("SMC_SEND_SCREEN_EVENTS", support.screen),
        ("SMC_SEND_ALIAS_EVENTS", support.alias),
        ("SMC_SEND_GROUP_EVENTS", support.group),
    ],
)
def test_send_toggle_off_filters_its_call_type(variable, factory):
    settings = load_settings({**BASE, variable: "false"})
    report, admitted = admit([factory(), support.identify()], settings, NOW)
    assert report.results[0].outcome == "filtered" and admitted[0].type == "identify"


def test_repeated_message_id_in_one_request_is_a_duplicate():
    first = support.track()
    report, admitted = admit([first, dict(first)], SETTINGS, NOW)
    assert report.results[1].outcome == "duplicate" and len(admitted) == 1


def test_oversized_event_in_a_batch_is_rejected_alone():
    big = support.track(properties={"blob": "x" * 40000})
    report, admitted = admit([big, support.identify()], SETTINGS, NOW)
    assert report.results[0].outcome == "rejected" and "32768" in (report.results[0].reason or "")
    assert len(admitted) == 1


def test_rejection_reasons_never_echo_event_values():
    raw = {
        "type": "group",
        "userId": support.PII_EMAIL,
        "groupId": "vip",
        "traits": {"matchkey": support.PII_TRAIT + "/x", "userlist": "l"},
    }
    report, _ = admit([raw], SETTINGS, NOW)
    reason = report.results[0].reason or ""
    assert support.PII_EMAIL not in reason and support.PII_TRAIT not in reason
