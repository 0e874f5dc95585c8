"""Profiles, audiences and transactional messages: what each event maps to (unit tests)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from handler.events import admit, validate_event
from handler.mappers import map_event
from handler.mappers.audience import segment_name
from handler.settings import load_settings
from tests import support
from tests.test_settings import BASE, PROFILES

NOW = "2026-11-27T12:00:00.000Z"
SETTINGS = load_settings(
    {
        **PROFILES,
        "SMC_PROFILE_FIELDS": json.dumps(
            {
                "MAIL": "traits.email",
                "FIRSTNAME": "traits.firstName",
                "CITY": "traits.address.city",
                "TAGS": "traits.tags",
                "LOCALE": "context.locale",
            }
        ),
        "SMC_ALLOWED_EVENTS": "Signed Up",
    }
)


def parts(raw, settings=SETTINGS):
    return {op.target.part: op for op in map_event(validate_event(0, raw, NOW), settings)}


def test_identify_upserts_only_the_mapped_columns_it_carries():
    raw = support.identify(traits={"email": "a@example.com", "address": {"city": "Ghent"}, "tags": ["x", 1]})
    profile = parts(raw)["profile"]
    assert profile.target.list_name == "users" and profile.target.key_fields == ("CUSTOMER_ID",)
    assert profile.target.fields == ("CUSTOMER_ID", "MAIL", "CITY", "TAGS", "LOCALE")
    assert profile.row == [raw["userId"], "a@example.com", "Ghent", '["x",1]', "en-US"]
    assert profile.target.import_option == "InsertAndUpdate"
    assert set(profile.claim.slots) == {"MAIL", "CITY", "TAGS", "LOCALE"}


def test_a_present_null_clears_its_column_and_an_absent_path_leaves_it():
    raw = support.identify(traits={"email": None}, context={})
    profile = parts(raw)["profile"]
    assert profile.target.fields == ("CUSTOMER_ID", "MAIL") and profile.row[1:] == [None]


def test_identify_without_user_id_or_mapped_columns_has_no_profile_part():
    assert "profile" not in parts(support.identify(userId=None, traits={"email": "a@example.com"}))
    assert "profile" not in parts(support.identify(traits={"plan": "gold"}, context={}))


def test_only_update_mode_reaches_smc_as_its_data_import_option():
    settings = load_settings({**PROFILES, "SMC_PROFILE_MODE": "OnlyUpdate"})
    assert parts(support.identify(), settings)["profile"].target.import_option == "OnlyUpdate"


@pytest.mark.parametrize(("name", "method"), [("Audience Entered", "load"), ("Audience Exited", "delete")])
def test_audience_tracks_change_the_static_segment_named_after_the_key(name, method):
    raw = support.track(
        name, properties={"audience_key": "high_value", "high_value": name.endswith("Entered")}
    )
    audience = parts(raw)["audience"]
    assert (audience.target.action, audience.target.segment) == (method, "high_value")
    assert audience.target.list_name == "users" and audience.target.fields == ("CUSTOMER_ID",)
    assert audience.target.create_segment is (method == "load")
    assert audience.target.absent_segment_is_done is (method == "delete")


@pytest.mark.parametrize(("flag", "method"), [(True, "load"), (False, "delete")])
def test_an_identify_whose_audience_trait_flips_changes_the_membership(flag, method):
    personas = {"computation_class": "audience", "computation_key": "churn_risk", "space_id": "sp_1"}
    raw = support.identify(traits={"churn_risk": flag}, context={"personas": personas})
    audience = parts(raw)["audience"]
    assert (audience.target.action, audience.target.segment) == (method, "churn_risk")


def test_a_computed_trait_or_a_non_boolean_flag_is_no_membership_change():
    trait = {"computation_class": "trait", "computation_key": "ltv"}
    assert "audience" not in parts(support.identify(traits={"ltv": 3}, context={"personas": trait}))
    audience = {"computation_class": "audience", "computation_key": "vip"}
    assert "audience" not in parts(support.identify(traits={"vip": "yes"}, context={"personas": audience}))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("vip", "vip"),  # a valid api name stays exactly as it is
        ("_2024", "_2024"),
        ("a" * 100, "a" * 100),
        ("high value users!", f"high_value_users__{_digest('high value users!')}"),
        ("-x", f"_x_{_digest('-x')}"),
        ("2024-buyers", f"_2024_buyers_{_digest('2024-buyers')}"),
        ("2024buyers", f"_2024buyers_{_digest('2024buyers')}"),  # the added `_` is a change too
        ("churn-risk", f"churn_risk_{_digest('churn-risk')}"),
        ("a" * 120, "a" * 91 + "_" + _digest("a" * 120)),
        ("!!!", None),
        ("", None),
        (3, None),
    ],
)
def test_audience_keys_become_smc_api_names(key, name):
    assert segment_name(key) == name


@pytest.mark.parametrize(
    "keys",
    [
        ("gold-tier", "gold tier", "gold_tier"),
        ("x" * 100 + "-first", "x" * 100 + "-second"),
        ("Käufer-ÄÖ", "K_ufer___", "Kaufer-AO"),
        ("vip", "vip ", " vip"),
    ],
)
def test_distinct_audience_keys_never_share_a_segment(keys):
    names = [segment_name(key) for key in keys]
    assert len(set(names)) == len(keys), names
    assert all(name and len(name) <= 100 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) for name in names)
    assert names == [segment_name(key) for key in keys]  # stable: the same key, the same segment


def test_under_only_update_an_audience_membership_never_creates_a_profile():
    settings = load_settings({**PROFILES, "SMC_PROFILE_MODE": "OnlyUpdate"})
    entered = parts(support.track("Audience Entered", properties={"audience_key": "vip"}), settings)
    assert entered["audience"].target.import_option == "OnlyUpdate"
    group = map_event(validate_event(0, support.group("ADD", segment="vip"), NOW), settings)
    assert [op.target.import_option for op in group if op.target.segment] == ["OnlyUpdate"]


def test_an_unusable_audience_key_rejects_that_part_with_a_reason():
    raw = support.track("Audience Entered", properties={"audience_key": "???"})
    audience = parts(raw)["audience"]
    assert audience.refused and "audience key" in audience.refused


@pytest.mark.parametrize(
    ("properties", "context", "language"),
    [
        ({"language": "fr"}, {"locale": "de-DE"}, "FR"),
        ({}, {"locale": "de-DE"}, "DE"),
        ({}, {}, "EN"),  # SMC_TRANSACTIONAL_LANGUAGE
    ],
)
def test_a_transactional_track_is_sent_in_the_language_it_carries(properties, context, language):
    raw = support.track("Order Completed", properties=properties, context=context)
    send = parts(raw)["transactional message"]
    assert send.target.action == "send" and send.target.list_name == "order_confirmation"
    (item,) = send.row
    assert item == {
        "recipient": raw["userId"],
        "language": language,
        "data": properties,
        "lookup": {"scope": "MASTER", "field": "CUSTOMER_ID"},
    }


def test_a_transactional_track_without_a_language_is_refused_with_a_reason():
    settings = load_settings({**PROFILES, "SMC_TRANSACTIONAL_LANGUAGE": ""})
    send = parts(support.track("Order Completed", properties={}, context={}), settings)[
        "transactional message"
    ]
    assert send.refused and "language" in send.refused


def test_the_allowlist_governs_the_row_not_the_journey_nor_the_audience():
    report, admitted = admit(
        [
            support.track("Order Completed"),
            support.track("Audience Entered", properties={"audience_key": "vip"}),
            support.track("Page Scrolled"),
        ],
        SETTINGS,
        NOW,
    )
    assert [e.index for e in admitted] == [0, 1]
    assert report.results[2].outcome == "filtered"
    assert set(parts(admitted[0].raw)) == {"transactional message"}  # no events-list row
    assert set(parts(admitted[1].raw)) == {"audience"}


def test_a_delete_also_removes_the_profile_unless_turned_off():
    raw = support.delete(userId="u-9")
    deletion = parts(raw)["profile deletion"]
    assert deletion.target.list_name == "users" and deletion.row == ["u-9"]
    assert not deletion.target.absent_segment_is_done  # a missing profile list is no "done"
    settings = load_settings({**PROFILES, "SMC_DELETE_PROFILES": "false"})
    assert set(parts(raw, settings)) == {"events list"}


def test_without_a_profile_list_every_event_has_one_part():
    settings = load_settings(BASE)
    for raw in (support.identify(), support.track("Order Completed"), support.delete()):
        assert len(map_event(validate_event(0, raw, NOW), settings)) == 1
