"""`smc-destination check` against a healthy sandbox and against each broken setup."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.examples import example_env
from handler.cli import main
from handler.schema import EVENTS_LIST_COLUMNS
from sandbox.state import EVENTS_FIELDS
from tests import support

BIN = Path(sys.executable).parent


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["check", *args])
    out = capsys.readouterr().out
    return code, out.splitlines()


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def fields_without(*names: str, **changes: dict[str, Any]) -> list[dict[str, Any]]:
    fields = [dict(f) for f in EVENTS_FIELDS if f["name"] not in names]
    for field in fields:
        field.update(changes.get(field["name"], {}))
    return fields


def test_a_healthy_setup_passes_every_check(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the Lambda's settings in the environment and its secret in Secrets Manager
    code, lines = run_check(capsys, "--segment", "users/vip:CUSTOMER_ID")
    # Then every finding is ok and the exit code is 0
    assert code == 0, lines
    assert not failures(lines)
    text = "\n".join(lines)
    assert f"read from Secrets Manager secret {stack.secret_id}" in text
    assert "credentials accepted and organization 'demo' found" in text
    assert f"has all {len(EVENTS_LIST_COLUMNS)} columns" in text
    assert "static segment 'users/vip' exists" in text
    assert "match key field users.CUSTOMER_ID exists" in text
    assert lines[-1].startswith("All checks passed")


def test_a_bad_key_is_one_failure_with_its_fix(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.set_secret(apiKey="expired-key")
    code, lines = run_check(capsys)
    assert code == 1
    (line,) = failures(lines)
    assert "SMC refused the service account (401)" in line
    assert (
        "-> fix: put a valid, unexpired SMC service account key and secret (apiKey, apiSecret) in the "
        in line
    )
    assert stack.secret_id in line


@pytest.mark.parametrize(
    ("days", "level", "text"),
    [
        (90, "ok", "SMC service account key expires on {date} (90 days left)"),
        (20, "warn", "SMC service account key expires on {date}: 20 day(s) left"),
        (-1, "FAIL", "SMC service account key expired on {date}"),
    ],
)
def test_key_expiry_is_ok_warn_or_fail_when_the_secret_has_a_date(
    stack: Any, capsys: pytest.CaptureFixture[str], days: int, level: str, text: str
) -> None:
    expires = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=days, minutes=30)
    stack.set_secret(apiKeyExpiresAt=expires.isoformat())
    code, lines = run_check(capsys)
    (line,) = [line for line in lines if "SMC service account key" in line]
    assert line.startswith(f"{level:<5} " + text.format(date=expires.strftime("%Y-%m-%d %H:%M UTC")))
    if level != "ok":
        assert "-> fix: create a new key in SMC and put it in the secret" in line
    assert code == (1 if level == "FAIL" else 0)


def test_key_expiry_is_a_warning_when_the_secret_has_no_date(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_check(capsys)
    assert code == 0
    assert "warn  the secret has no apiKeyExpiresAt" in "\n".join(lines)


def test_an_expiry_that_is_not_a_date_fails_the_check_and_names_the_field_not_its_value(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.set_secret(apiKeyExpiresAt="31/03/2027")
    code, lines = run_check(capsys)
    assert code == 1
    (line,) = failures(lines)
    assert "apiKeyExpiresAt is not an ISO 8601 date" in line and "delivery goes on" in line
    assert "31/03/2027" not in "\n".join(lines)


def test_a_missing_events_list_points_to_provision(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(capsys, "--events-list", "no_such_list")
    assert code == 1
    (line,) = failures(lines)
    assert "events list 'no_such_list' does not exist" in line and "smc-destination provision" in line


def test_a_missing_column(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.sandbox.add_list(support.ORG, "partial", fields_without("CONTEXT"))
    code, lines = run_check(capsys, "--events-list", "partial")
    assert code == 1
    (line,) = failures(lines)
    assert "column partial.CONTEXT is missing" in line and "provision" in line


def test_wrong_types_lengths_and_not_null(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fields = fields_without(
        USER_ID={"data_type": "Numeric"},
        EVENT_NAME={"length": 50},
        PROPERTIES={"data_type": "Text", "length": 4000},
        PREVIOUS_ID={"allow_null": False},
    )
    fields.append({"name": "REGION", "data_type": "Text", "length": 10, "allow_null": False})
    stack.sandbox.add_list(support.ORG, "broken", fields)
    code, lines = run_check(capsys, "--events-list", "broken")
    assert code == 1
    found = "\n".join(failures(lines))
    assert "column broken.USER_ID is Numeric, needs Text(255) or LongText" in found
    assert "column broken.EVENT_NAME is Text(50): shorter than the 255 characters" in found
    assert "column broken.PROPERTIES is Text(4000), needs LongText" in found
    assert "column broken.PREVIOUS_ID does not allow null" in found
    assert "column broken.REGION is NOT NULL but the destination never fills it" in found
    assert len(failures(lines)) == 5
    assert all("-> fix: " in line for line in failures(lines))


def test_missing_and_dynamic_segments(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stack.sandbox.add_segment(support.ORG, "users", "recent", "Dynamic")
    code, lines = run_check(
        capsys, "--segment", "users/gold", "--segment", "users/recent", "--segment", "nolist/vip"
    )
    assert code == 1
    found = failures(lines)
    assert len(found) == 3
    assert "static segment 'users/gold' does not exist" in found[0]
    assert "segment 'users/recent' is Dynamic, not Static" in found[1]
    assert "user list 'nolist' does not exist" in found[2]


def test_a_segment_is_found_when_the_list_has_more_segments_than_one_page(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a user list with 250 segments, the one asked for on the third page
    for n in range(250):
        stack.sandbox.add_segment(support.ORG, "users", f"campaign_{n:03d}", "Static")
    stack.sandbox.clear_requests_log()
    code, lines = run_check(capsys, "--segment", "users/campaign_249")
    # Then check pages through every segment and finds it
    assert code == 0, lines
    assert "static segment 'users/campaign_249' exists" in "\n".join(lines)
    pages = [r.query for r in stack.smc_calls("/segments")]
    assert [p["skip"] for p in pages] == ["0", "100", "200"]
    assert {p["take"] for p in pages} == {"100"}


def test_a_segment_is_found_when_its_api_name_differs_only_in_case(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_check(capsys, "--segment", "users/VIP:customer_id")
    assert code == 0, lines
    assert "static segment 'users/VIP' exists" in "\n".join(lines)


def test_an_unknown_organization(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(capsys, "--organization", "nope")
    assert code == 1
    (line,) = failures(lines)
    assert "SMC has no organization 'nope'" in line and "SMC_ORGANIZATION" in line


def test_missing_settings_and_unreachable_smc(
    stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMC_ADMIN_URL")
    code, lines = run_check(capsys)
    assert code == 1 and "settings: SMC_ADMIN_URL is required" in failures(lines)[0]
    code, lines = run_check(capsys, "--admin-url", "http://127.0.0.1:9", "--timeout", "0.3")
    assert code == 1 and "SMC not usable at http://127.0.0.1:9" in failures(lines)[0]


def test_credentials_from_a_file_or_flags_instead_of_the_secret(
    stack: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMC_SECRET_ID")
    secret = tmp_path / "smc.json"
    secret.write_text(json.dumps({"apiKey": support.SMC_KEY, "apiSecret": support.SMC_SECRET}))
    code, lines = run_check(capsys, "--secret-file", str(secret))
    assert code == 0 and f"read from --secret-file {secret}" in "\n".join(lines)
    monkeypatch.setenv("SMC_API_SECRET", "wrong")
    code, lines = run_check(capsys, "--api-key", support.SMC_KEY)
    assert code == 1 and "use a valid, unexpired SMC service account" in failures(lines)[0]
    # without any source of credentials the message says which flags to use
    assert main(["check"]) == 1
    assert "pass its flag" in capsys.readouterr().out


def test_settings_from_the_functions_configuration_file(
    stack: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `aws lambda get-function-configuration` output
    env = {name: value for name, value in stack_env(stack).items()}
    for name in env:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "fn.json"
    config.write_text(json.dumps({"FunctionName": "x", "Environment": {"Variables": env}}))
    code, lines = run_check(capsys, "--env-file", str(config))
    assert code == 0, lines


def stack_env(stack: Any) -> dict[str, str]:
    return {
        "SMC_ADMIN_URL": stack.sandbox.base_url,
        "SMC_EXTRA_ALLOWED_HOSTS": "127.0.0.1",
        "SMC_ORGANIZATION": support.ORG,
        "SMC_SECRET_ID": stack.secret_id,
        "IDEMPOTENCY_TABLE": stack.table,
    }


def test_the_console_script_and_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    # The installed console script runs
    result = subprocess.run(
        [str(BIN / "smc-destination"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "usage: smc-destination" in result.stdout
    for command in ("check", "provision", "replay", "status"):
        assert command in result.stdout
        # and each command has its own --help
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert f"usage: smc-destination {command}" in text and "examples:" in text


def test_an_unreadable_secret(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_check(capsys, "--secret-id", "segment-smc/does-not-exist")
    assert code == 1
    (line,) = failures(lines)
    assert "SMC service account cannot be read" in line and "-> fix: check SMC_SECRET_ID" in line


# -- profile settings (SMC_PROFILE_*, SMC_AUDIENCES, SMC_TRANSACTIONAL_*) ----------------------------
def with_profiles(stack: Any, **changes: str) -> None:
    """The example profile settings of events/env.json, with `changes` on top."""
    prefixes = ("SMC_PROFILE_", "SMC_AUDIENCES", "SMC_TRANSACTIONAL_", "SMC_DELETE_PROFILES")
    env = {name: value for name, value in example_env().items() if name.startswith(prefixes)}
    env.update(changes)
    stack.set_env(**env)


def lines_about(lines: list[str], text: str) -> list[str]:
    return [line for line in lines if text in line]


def line_about(stack: Any, capsys: pytest.CaptureFixture[str], text: str, **settings: str) -> str:
    """Run check (exit code 0) with the example profile settings and `settings`: the one line
    carrying `text`."""
    with_profiles(stack, **settings)
    code, lines = run_check(capsys)
    assert code == 0, lines
    (line,) = lines_about(lines, text)
    return line


def test_profile_checks_pass_when_the_example_settings_meet_the_default_seed(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with_profiles(stack)
    code, lines = run_check(capsys)
    assert code == 0, lines
    assert "ok    profile list 'users' exists (Userlist)" in lines
    assert "ok    key column users.CUSTOMER_ID is Text(255): profiles match on userId" in lines
    assert (
        "info  column users.MAIL is Text(255) <- traits.email: longer values are cut to 255 characters"
        in lines
    )
    assert (
        "info  column users.CITY is Text(100) <- traits.address.city: longer values are cut to 100 characters"
        in lines
    )
    assert len(lines_about(lines, "longer values are cut")) == 4  # MAIL, FIRSTNAME, CITY, LOCALE
    assert "info  audience segments on 'users' (1 static): vip" in lines
    assert "ok    transactional journey 'order_confirmation' exists (for track 'Order Completed')" in lines
    assert "ok    transactional messages default to language EN" in lines


def test_no_profile_line_is_printed_when_the_profile_list_is_not_set(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_check(capsys)
    assert code == 0
    assert not lines_about(lines, "profile") and not lines_about(lines, "journey")


def test_check_fails_naming_the_setting_when_the_profile_list_does_not_exist(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with_profiles(stack, SMC_PROFILE_LIST="customers")
    code, lines = run_check(capsys)
    assert code == 1
    (line,) = failures(lines)
    assert "profile list 'customers' does not exist  -> fix: set SMC_PROFILE_LIST" in line
    assert "provision never creates a user list" in line


def test_check_warns_when_the_profile_list_is_not_a_userlist(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    line = line_about(
        stack,
        capsys,
        "profile list",
        SMC_PROFILE_LIST="segment_events",
        SMC_PROFILE_KEY="USER_ID",
        SMC_PROFILE_FIELDS="",
    )
    assert line.startswith("warn  profile list 'segment_events' is a Datalist")


def test_check_fails_when_the_key_column_is_missing(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with_profiles(stack, SMC_PROFILE_KEY="SEGMENT_ID")
    code, lines = run_check(capsys)
    assert code == 1
    (line,) = failures(lines)
    assert "profile list 'users' has no key column SEGMENT_ID  -> fix: set SMC_PROFILE_KEY" in line


def test_check_warns_when_the_key_column_cannot_hold_user_ids(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    line = line_about(stack, capsys, "key column", SMC_PROFILE_KEY="ID")
    assert line == (
        "warn  key column users.ID is Long, not Text or LongText: only Segment user ids that are a whole "
        "number can be matched  -> fix: set SMC_PROFILE_KEY to a Text column"
    )


def test_check_fails_naming_each_mapped_column_that_is_missing(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = {"MAIL": "traits.email", "SHOE_SIZE": "traits.shoeSize", "PLAN": "traits.plan"}
    with_profiles(stack, SMC_PROFILE_FIELDS=json.dumps(mapping))
    code, lines = run_check(capsys)
    assert code == 1
    assert failures(lines) == [
        "FAIL  column users.SHOE_SIZE is missing (SMC_PROFILE_FIELDS maps traits.shoeSize to it)  -> fix: "
        "add SHOE_SIZE to list 'users' in SMC, or remove it from SMC_PROFILE_FIELDS "
        "(provision never alters a user list)",
        "FAIL  column users.PLAN is missing (SMC_PROFILE_FIELDS maps traits.plan to it)  -> fix: "
        "add PLAN to list 'users' in SMC, or remove it from SMC_PROFILE_FIELDS "
        "(provision never alters a user list)",
    ]


@pytest.mark.parametrize(
    ("data_type", "holds"),
    [
        ("Boolean", "true or false"),
        ("Numeric", "a number"),
        ("Float", "a number"),
        ("Long", "a whole number"),
        ("Date", "an ISO 8601 date"),
        ("DateTime", "an ISO 8601 date and time"),
    ],
)
def test_check_warns_what_the_path_must_hold_when_a_mapped_column_is_not_text(
    stack: Any, capsys: pytest.CaptureFixture[str], data_type: str, holds: str
) -> None:
    stack.sandbox.add_fields(support.ORG, "users", [{"name": "TRAIT", "data_type": data_type}])
    line = line_about(stack, capsys, "users.TRAIT", SMC_PROFILE_FIELDS=json.dumps({"TRAIT": "traits.value"}))
    assert line == (
        f"warn  column users.TRAIT is {data_type}: traits.value must hold {holds}, else SMC refuses that "
        f"profile's update  -> fix: map a path that holds {holds}, or make TRAIT Text in SMC"
    )


def test_check_is_ok_without_a_length_note_when_a_mapped_column_is_longtext(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sandbox.add_fields(support.ORG, "users", [{"name": "BIO", "data_type": "LongText"}])
    with_profiles(stack, SMC_PROFILE_FIELDS=json.dumps({"BIO": "traits.bio"}))
    code, lines = run_check(capsys)
    assert code == 0, lines
    assert "ok    column users.BIO is LongText <- traits.bio" in lines


def test_check_fails_when_a_transactional_journey_does_not_exist(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    events = {
        "Order Completed": "order_confirmation",
        "Password Reset": "pw_reset",
        "Reset Again": "pw_reset",
    }
    with_profiles(stack, SMC_TRANSACTIONAL_EVENTS=json.dumps(events))
    code, lines = run_check(capsys)
    assert code == 1
    (line,) = failures(lines)
    assert line == (
        "FAIL  transactional journey 'pw_reset' does not exist (for track 'Password Reset', 'Reset Again')  "
        "-> fix: create a transactional journey with api name 'pw_reset' in SMC, "
        "or correct SMC_TRANSACTIONAL_EVENTS"
    )
    assert len(stack.smc_calls("/journeys/transactional/pw_reset")) == 1  # one look per journey


def test_check_warns_when_transactional_events_have_no_default_language(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    line = line_about(stack, capsys, "SMC_TRANSACTIONAL_LANGUAGE", SMC_TRANSACTIONAL_LANGUAGE="")
    assert line == (
        "warn  SMC_TRANSACTIONAL_EVENTS is set but SMC_TRANSACTIONAL_LANGUAGE is empty: a transactional "
        "event without properties.language or context.locale cannot be sent  -> fix: set "
        "SMC_TRANSACTIONAL_LANGUAGE to one of the organization's languages (EN, FR, DE, NL)"
    )


def test_check_warns_when_the_default_language_is_not_the_organizations(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    line = line_about(stack, capsys, "SMC_TRANSACTIONAL_LANGUAGE ES", SMC_TRANSACTIONAL_LANGUAGE="ES")
    assert line.startswith("warn  SMC_TRANSACTIONAL_LANGUAGE ES is not one of the organization's languages")


def test_check_lists_every_static_audience_segment_page_by_page_when_there_are_many(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(249):
        stack.sandbox.add_segment(support.ORG, "users", f"audience_{n:03d}", "Static")
    stack.sandbox.add_segment(support.ORG, "users", "recent", "Dynamic")
    with_profiles(stack)
    stack.sandbox.clear_requests_log()
    code, lines = run_check(capsys)
    assert code == 0, lines
    (line,) = lines_about(lines, "audience segments")
    names = ", ".join(f"audience_{n:03d}" for n in range(20))
    assert line == f"info  audience segments on 'users' (250 static): {names} and 230 more"
    assert [r.query["skip"] for r in stack.smc_calls("/segments")] == ["0", "100", "200"]


def test_check_says_the_destination_will_create_segments_when_the_list_has_none(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sandbox.add_list(support.ORG, "people", [{"name": "CUSTOMER_ID", "data_type": "Text"}], "Userlist")
    line = line_about(stack, capsys, "audience segments", SMC_PROFILE_LIST="people", SMC_PROFILE_FIELDS="")
    assert line.startswith("info  no audience segments on 'people' yet: the destination creates")


def test_check_reads_no_segments_when_audiences_are_off(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with_profiles(stack, SMC_AUDIENCES="false")
    stack.sandbox.clear_requests_log()
    code, lines = run_check(capsys)
    assert code == 0, lines
    assert not lines_about(lines, "audience segments")
    assert stack.smc_calls("/segments") == []
