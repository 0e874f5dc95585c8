"""`smc-destination check` against a healthy sandbox and against each broken setup."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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


def with_profiles(stack: Any, **changes: str) -> None:
    env = {
        "SMC_PROFILE_LIST": "users",
        "SMC_PROFILE_KEY": "CUSTOMER_ID",
        "SMC_PROFILE_FIELDS": json.dumps({"MAIL": "traits.email", "ID": "traits.number"}),
        "SMC_TRANSACTIONAL_EVENTS": json.dumps({"Order Completed": "order_confirmation"}),
        "SMC_TRANSACTIONAL_LANGUAGE": "EN",
    }
    env.update(changes)
    stack.set_env(**env)


def test_profile_settings_are_checked_when_a_profile_list_is_set(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with_profiles(stack)
    stack.sandbox.add_segment(support.ORG, "users", "high_value")
    code, lines = run_check(capsys)
    text = "\n".join(lines)
    assert code == 0, lines
    assert "profile list 'users' keyed on CUSTOMER_ID" in text
    assert "column users.MAIL is Text(255) for traits.email; longer values are cut" in text
    assert "column users.ID is Long: traits.number must hold a whole number" in text  # a warn line
    assert "transactional journey 'order_confirmation' exists (for 'Order Completed')" in text
    assert "audience segments on 'users': high_value, vip" in text


def test_a_missing_journey_column_or_key_is_a_failure_with_its_fix(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with_profiles(
        stack,
        SMC_PROFILE_KEY="NO_SUCH_KEY",
        SMC_PROFILE_FIELDS=json.dumps({"NICKNAME": "traits.nick"}),
        SMC_TRANSACTIONAL_EVENTS=json.dumps({"Order Completed": "no_such_journey"}),
        SMC_TRANSACTIONAL_LANGUAGE="",
    )
    code, lines = run_check(capsys)
    assert code == 1
    fails = "\n".join(failures(lines))
    assert "has no key column NO_SUCH_KEY" in fails and "correct SMC_PROFILE_KEY" in fails
    assert "has no column NICKNAME (mapped from traits.nick)" in fails
    assert "transactional journey 'no_such_journey'" in fails
    assert any(line.startswith("warn") and "SMC_TRANSACTIONAL_LANGUAGE is empty" in line for line in lines)


def test_a_missing_profile_list_is_one_failure(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with_profiles(stack, SMC_PROFILE_LIST="no_such_users")
    code, lines = run_check(capsys)
    assert code == 1
    (line,) = failures(lines)
    assert "profile list 'no_such_users' does not exist" in line
