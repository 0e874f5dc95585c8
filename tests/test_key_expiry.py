"""The SMC key's expiry date in the secret: parsed, reported once per process as SmcKeyDaysLeft."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handler.credentials import parse_secret
from tests import support
from tests.conftest import default_secret
from tests.support import api_event, invoke


def days_left_points(out: str) -> list[float]:
    """Every SmcKeyDaysLeft value among the EMF lines printed."""
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [value for blob in blobs for value in blob.get("SmcKeyDaysLeft", [])]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-03-31", datetime(2027, 3, 31, tzinfo=UTC)),
        ("2027-03-31T12:30:00Z", datetime(2027, 3, 31, 12, 30, tzinfo=UTC)),
        ("2027-03-31T14:30:00+02:00", datetime(2027, 3, 31, 12, 30, tzinfo=UTC)),
        ("2027-03-31T12:30:00", datetime(2027, 3, 31, 12, 30, tzinfo=UTC)),
    ],
)
def test_expiry_is_read_as_utc_when_given_as_a_date_or_date_time(value: str, expected: datetime) -> None:
    credentials = parse_secret({**default_secret(), "apiKeyExpiresAt": value})
    assert credentials.api_key_expires_at == expected


def test_expiry_is_none_when_the_secret_has_none() -> None:
    assert parse_secret(default_secret()).api_key_expires_at is None
    assert parse_secret({**default_secret(), "apiKeyExpiresAt": ""}).api_key_expires_at is None


@pytest.mark.parametrize("value", ["31/03/2027 " + support.SMC_SECRET, 20270331])
def test_an_unreadable_expiry_costs_the_warning_never_the_secret(value: Any) -> None:
    credentials = parse_secret({**default_secret(), "apiKeyExpiresAt": value})
    assert credentials.api_key_expires_at is None and credentials.api_key_expiry_unreadable
    assert credentials.api_key == default_secret()["apiKey"]


def test_events_are_delivered_while_the_expiry_is_a_typo_and_it_is_counted_once(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.set_secret(apiKeyExpiresAt="31/03/2027")
    capsys.readouterr()
    for _ in range(2):
        status, body, _ = support.invoke(support.api_event(support.track()))
        assert status == 200 and body["delivered"] == 1, body
    out = capsys.readouterr().out
    assert out.count('"SmcKeyExpiryUnreadable":[1.0]') == 1  # once per process, not per request
    assert '"SmcKeyDaysLeft":[' not in out
    assert "31/03/2027" not in out


def test_key_days_left_is_emitted_once_per_process_when_the_secret_has_an_expiry(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    expires = datetime.now(UTC) + timedelta(days=10, hours=12)
    stack.set_secret(apiKeyExpiresAt=expires.isoformat())
    capsys.readouterr()
    # Given three requests served by one warm process
    for _ in range(3):
        assert invoke(api_event(support.track()))[0] == 200
    # Then one data point was emitted, the days left
    (point,) = days_left_points(capsys.readouterr().out)
    assert 10 <= point <= 10.5
    # And a new process (a cold start) emits it again
    stack.set_env()
    assert invoke(api_event(support.track()))[0] == 200
    assert len(days_left_points(capsys.readouterr().out)) == 1


def test_key_days_left_is_not_emitted_when_the_secret_has_no_expiry(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert invoke(api_event(support.track()))[0] == 200
    assert days_left_points(capsys.readouterr().out) == []
