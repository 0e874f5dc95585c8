"""Settings: read once, validated, every bad variable named."""

from __future__ import annotations

import pytest

from handler.settings import SettingsError, load_settings, validate_admin_url

BASE = {
    "SMC_ADMIN_URL": "https://acme.slgnt.eu",
    "SMC_ORGANIZATION": "acme",
    "SMC_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:smc-AbCdEf",
    "IDEMPOTENCY_TABLE": "segment-smc-idempotency",
}


def test_defaults_apply_when_only_required_settings_are_given():
    settings = load_settings(BASE)
    assert settings.smc_base_url == "https://acme.slgnt.eu/Portal/Api"
    assert settings.events_list == "segment_events"
    assert settings.allowed_events is None
    assert settings.send_page_events and settings.send_screen_events
    assert settings.send_alias_events and settings.send_group_events
    assert settings.response_deadline_ms == 4500
    assert settings.idempotency_ttl_seconds >= 4 * 3600


@pytest.mark.parametrize("missing", sorted(BASE))
def test_settings_error_names_the_variable_when_a_required_one_is_missing(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        load_settings(env)


@pytest.mark.parametrize(
    "url",
    [
        "http://acme.slgnt.us",  # plain http to a real tenant
        "https://evil.example.com",
        "https://acme.slgnt.us.evil.com",
        "https://user:pw@acme.slgnt.us",
        "https://acme.slgnt.us/other/path",
        "https://acme.slgnt.us?x=1",
        "ftp://acme.slgnt.us",
        "not a url",
    ],
)
def test_admin_url_is_refused_when_not_an_smc_https_host(url):
    with pytest.raises(SettingsError, match="SMC_ADMIN_URL"):
        validate_admin_url(url, frozenset())


def test_admin_url_accepts_listed_sandbox_host_and_loopback_http():
    assert (
        validate_admin_url("http://127.0.0.1:8899", frozenset({"127.0.0.1"}))
        == "http://127.0.0.1:8899/Portal/Api"
    )
    assert validate_admin_url("https://sandbox.example.net", frozenset({"sandbox.example.net"}))
    with pytest.raises(SettingsError, match="https"):
        validate_admin_url("http://sandbox.example.net", frozenset({"sandbox.example.net"}))


def test_admin_url_accepts_module_hosts_and_a_trailing_portal_api():
    assert validate_admin_url("https://acme.module.slgnt.us/Portal/Api/", frozenset()) == (
        "https://acme.module.slgnt.us/Portal/Api"
    )


def test_allowed_events_is_parsed_as_a_comma_list():
    settings = load_settings({**BASE, "SMC_ALLOWED_EVENTS": " Order Completed, Signed Up ,"})
    assert settings.allowed_events == frozenset({"Order Completed", "Signed Up"})
    assert settings.track_allowed("Signed Up") and not settings.track_allowed("Other")
    assert load_settings({**BASE, "SMC_ALLOWED_EVENTS": "*"}).allowed_events is None


@pytest.mark.parametrize(
    "value,expected", [("false", False), ("FALSE", False), ("0", False), ("true", True), ("yes", True)]
)
def test_send_toggles_read_booleans(value, expected):
    assert load_settings({**BASE, "SMC_SEND_PAGE_EVENTS": value}).send_page_events is expected


def test_send_toggle_names_the_variable_when_not_a_boolean():
    with pytest.raises(SettingsError, match="SMC_SEND_GROUP_EVENTS"):
        load_settings({**BASE, "SMC_SEND_GROUP_EVENTS": "maybe"})


@pytest.mark.parametrize(
    "name", ["RESPONSE_DEADLINE_MS", "SECRET_MAX_AGE_SECONDS", "IDEMPOTENCY_TTL_SECONDS"]
)
def test_numeric_setting_names_the_variable_when_out_of_range(name):
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, name: "-5"})
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, name: "abc"})


def test_events_list_must_be_an_api_name():
    with pytest.raises(SettingsError, match="SMC_EVENTS_LIST"):
        load_settings({**BASE, "SMC_EVENTS_LIST": "../admin"})


PROFILES = {
    **BASE,
    "SMC_PROFILE_LIST": "users",
    "SMC_PROFILE_KEY": "CUSTOMER_ID",
    "SMC_PROFILE_FIELDS": '{"MAIL": "traits.email", "CITY": "traits.address.city"}',
    "SMC_TRANSACTIONAL_EVENTS": '{"Order Completed": "order_confirmation"}',
    "SMC_TRANSACTIONAL_LANGUAGE": "EN",
}


def test_profiles_are_off_without_a_profile_list():
    assert load_settings(BASE).profiles is None


def test_profile_settings_are_read_with_their_defaults():
    profiles = load_settings(PROFILES).profiles
    assert profiles is not None
    assert profiles.fields == (("MAIL", ("traits", "email")), ("CITY", ("traits", "address", "city")))
    assert profiles.mode == "InsertAndUpdate" and profiles.audiences and profiles.delete_profiles
    assert profiles.journey_for("Order Completed") == "order_confirmation"
    assert profiles.journey_for("Signed Up") is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMC_PROFILE_FIELDS", "{not json"),
        ("SMC_PROFILE_FIELDS", '["MAIL"]'),
        ("SMC_PROFILE_FIELDS", '{"MAIL": 3}'),
        ("SMC_PROFILE_FIELDS", '{"MA IL": "traits.email"}'),
        ("SMC_PROFILE_FIELDS", '{"MAIL": "traits..email"}'),
        ("SMC_PROFILE_FIELDS", '{"CUSTOMER_ID": "traits.id"}'),
        ("SMC_TRANSACTIONAL_EVENTS", '{"Order Completed": "not/a/journey"}'),
        ("SMC_TRANSACTIONAL_EVENTS", "[]"),
        ("SMC_TRANSACTIONAL_LANGUAGE", "English please"),
        ("SMC_PROFILE_MODE", "OnlyInsert"),
        ("SMC_PROFILE_KEY", ""),
        ("SMC_PROFILE_LIST", "users/../x"),
        ("SMC_AUDIENCES", "maybe"),
    ],
)
def test_a_bad_profile_setting_is_named_at_start(variable, value):
    with pytest.raises(SettingsError, match=variable):
        load_settings({**PROFILES, variable: value})


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        # one SMC column named twice (names are case-insensitive): SMC refuses every load
        ("SMC_PROFILE_FIELDS", '{"MAIL": "traits.email", "mail": "traits.mail"}', "mail and MAIL"),
        ("SMC_PROFILE_FIELDS", '{"MAIL": "traits.email", "MAIL": "traits.mail"}', "'MAIL' twice"),
        # json.loads would keep the last journey silently
        (
            "SMC_TRANSACTIONAL_EVENTS",
            '{"Order Completed": "order_confirmation", "Order Completed": "other"}',
            "'Order Completed' twice",
        ),
    ],
)
def test_a_profile_setting_that_names_one_thing_twice_is_refused_at_start(variable, value, named):
    with pytest.raises(SettingsError, match=variable) as raised:
        load_settings({**PROFILES, variable: value})
    assert named in str(raised.value)


def test_transactional_event_names_differing_in_case_are_two_events():
    value = '{"Order Completed": "order_confirmation", "order completed": "order_confirmation"}'
    profiles = load_settings({**PROFILES, "SMC_TRANSACTIONAL_EVENTS": value}).profiles
    assert profiles is not None and profiles.journey_for("order completed") == "order_confirmation"


def test_max_event_age_defaults_to_four_days_and_must_fit_the_queues_retention():
    assert load_settings(BASE).max_event_age_seconds == 4 * 86400
    assert load_settings({**BASE, "MAX_EVENT_AGE_SECONDS": "86400"}).max_event_age_seconds == 86400
    for bad in ("15d", "0", str(14 * 86400 + 1)):
        with pytest.raises(SettingsError, match="MAX_EVENT_AGE_SECONDS"):
            load_settings({**BASE, "MAX_EVENT_AGE_SECONDS": bad})


def test_in_queued_mode_ordering_records_outlive_the_oldest_event_still_retried():
    queued = {**BASE, "DELIVERY_MODE": "queued", "DELIVERY_QUEUE_URL": "https://sqs/q", "STATE_TABLE": "t"}
    long_lived = load_settings({**queued, "MAX_EVENT_AGE_SECONDS": str(14 * 86400)})
    assert long_lived.ordering_ttl_seconds == 15 * 86400  # 14 days of retries, plus a day
    assert load_settings(queued).ordering_ttl_seconds == 7 * 86400  # the default outlasts 4 days
    assert load_settings({**BASE, "MAX_EVENT_AGE_SECONDS": str(14 * 86400)}).ordering_ttl_seconds == 7 * 86400
