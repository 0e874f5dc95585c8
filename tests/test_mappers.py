"""Mappers: one per call type, each producing the documented SMC row and target."""

from __future__ import annotations

import json

from handler.events import validate_event
from handler.mappers import MAPPERS, map_event
from handler.schema import EVENTS_LIST_FIELDS
from handler.settings import load_settings
from tests import support
from tests.test_settings import BASE

NOW = "2026-11-27T12:00:00.000Z"
SETTINGS = load_settings({**BASE, "SMC_EVENTS_LIST": "web_events"})


def row_of(raw):
    (op,) = map_event(validate_event(0, raw, NOW), SETTINGS)
    return op, dict(zip(EVENTS_LIST_FIELDS, op.row, strict=True))


def test_every_call_type_has_a_mapper():
    assert set(MAPPERS) == {"identify", "track", "page", "screen", "group", "alias", "delete"}


def test_identify_row_carries_traits_as_compact_json_and_is_keyed_on_message_id():
    raw = support.identify()
    op, row = row_of(raw)
    assert op.target.action == "load" and op.target.list_name == "web_events"
    assert op.target.key_fields == ("MESSAGE_ID",) and op.target.fields == EVENTS_LIST_FIELDS
    assert row["MESSAGE_ID"] == raw["messageId"] and row["EVENT_TYPE"] == "identify"
    assert row["USER_ID"] == raw["userId"] and row["ANONYMOUS_ID"] == raw["anonymousId"]
    assert (
        json.loads(row["PROPERTIES"]) == raw["traits"] and " " not in row["CONTEXT"].split('"userAgent"')[0]
    )
    assert json.loads(row["CONTEXT"]) == raw["context"]
    assert (
        row["EVENT_TIMESTAMP"] == "2026-11-27T10:15:30.123Z"
        and row["RECEIVED_AT"] == "2026-11-27T10:15:30.400Z"
    )
    assert row["EVENT_NAME"] is None and row["PREVIOUS_ID"] is None


def test_track_row_is_named_after_the_event_with_properties():
    raw = support.track("Signed Up")
    _, row = row_of(raw)
    assert row["EVENT_TYPE"] == "track" and row["EVENT_NAME"] == "Signed Up"
    assert json.loads(row["PROPERTIES"]) == raw["properties"]


def test_page_row_is_named_after_the_page_and_keeps_its_category():
    _, row = row_of(support.page())
    assert row["EVENT_NAME"] == "Pricing"
    assert json.loads(row["PROPERTIES"])["category"] == "Docs"


def test_screen_row_is_named_after_the_screen():
    _, row = row_of(support.screen())
    assert row["EVENT_TYPE"] == "screen" and row["EVENT_NAME"] == "Checkout"


def test_alias_row_carries_previous_id():
    _, row = row_of(support.alias())
    assert row["EVENT_TYPE"] == "alias" and row["PREVIOUS_ID"] == "anon-old-42" and row["PROPERTIES"] is None


def test_group_add_loads_into_the_static_segment_keyed_on_matchkey():
    raw = support.group("add")
    (op,) = map_event(validate_event(0, raw, NOW), SETTINGS)
    assert (op.target.action, op.target.list_name, op.target.segment) == ("load", "users", "vip")
    assert op.target.key_fields == ("CUSTOMER_ID",) and op.target.fields == ("CUSTOMER_ID",)
    assert op.row == [raw["userId"]]


def test_group_remove_deletes_from_the_static_segment():
    (op,) = map_event(validate_event(0, support.group("REMOVE"), NOW), SETTINGS)
    assert op.target.action == "delete" and op.target.segment == "vip"


def test_delete_removes_the_users_rows_and_a_404_never_counts_as_done():
    (op,) = map_event(validate_event(0, support.delete(userId="u-9"), NOW), SETTINGS)
    assert (op.target.action, op.target.list_name, op.target.key_fields) == (
        "delete",
        "web_events",
        ("USER_ID",),
    )
    # only SMC's counters can say the rows are gone; a 404 is a list that does not exist
    assert op.row == ["u-9"] and not op.target.absent_segment_is_done


def test_delete_of_an_anonymous_person_is_keyed_on_anonymous_id():
    raw = {"type": "delete", "anonymousId": "anon-1", "messageId": "d1"}
    (op,) = map_event(validate_event(0, raw, NOW), SETTINGS)
    assert op.target.key_fields == ("ANONYMOUS_ID",) and op.row == ["anon-1"]
