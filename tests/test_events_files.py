"""The `sam local invoke` events in events/: up to date, shaped like HTTP API v2 events, signed right."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
HAND_WRITTEN = {"examples.json"}
CASES: list[dict[str, Any]] = json.loads((EVENTS / "cases.json").read_text(encoding="utf-8"))
SECRET: dict[str, str] = json.loads((EVENTS / "examples.json").read_text(encoding="utf-8"))["secret"]
CASE_IDS = [case["file"] for case in CASES]


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def body_bytes(event: dict[str, Any]) -> bytes:
    if event["isBase64Encoded"]:
        return base64.b64decode(event["body"], validate=True)
    return event["body"].encode("utf-8")


def stringify(value: Any) -> bytes:
    """JavaScript's JSON.stringify, which is what Segment signs."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(body: bytes, secret: str = SECRET["sharedSecret"]) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def test_generated_files_are_up_to_date(tmp_path: Path) -> None:
    # Given the generator run into an empty folder
    subprocess.run(
        [sys.executable, str(EVENTS / "generate.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    generated = {path.name for path in tmp_path.iterdir()}
    # Then events/ holds exactly those files (plus the hand-written ones), byte for byte
    committed = {path.name for path in EVENTS.glob("*.json")} - HAND_WRITTEN
    assert committed == generated, "run `make events`"
    for name in sorted(generated):
        assert (EVENTS / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"{name} is stale: run `make events`"
        )


def test_cases_cover_every_required_scenario() -> None:
    statuses = {case["file"]: case["status"] for case in CASES}
    assert statuses == {
        "identify.json": 200,
        "audience_entered.json": 200,
        "track.json": 200,
        "track_not_allowed.json": 200,
        "page.json": 200,
        "screen.json": 200,
        "group_add.json": 200,
        "group_remove.json": 200,
        "alias.json": 200,
        "delete.json": 200,
        "track_base64.json": 200,
        "actions_batch.json": 200,
        "batch_envelope.json": 200,
        "bad_signature.json": 401,
        "malformed_json.json": 400,
        "track_missing_event.json": 400,
        "array_signature_only.json": 401,
    }
    for case in CASES:
        assert set(case["effect"]) == {
            "events_list_rows",
            "events_list_deletes",
            "segment_adds",
            "segment_removes",
            "profile_rows",
            "profile_deletes",
            "audience_adds",
            "transactional_sends",
        }
        if case["status"] == 200:
            assert case["outcomes"]["received"] == sum(
                case["outcomes"][k] for k in ("delivered", "filtered", "duplicate", "rejected", "retried")
            )
        else:
            assert not any(case["effect"].values()), (
                f"{case['file']}: a refused request changes nothing in SMC"
            )


def test_not_allowed_track_is_outside_the_example_allowlist() -> None:
    # The filtered case only filters if env.json's SMC_ALLOWED_EVENTS leaves its event out.
    env = json.loads((EVENTS / "env.json").read_text())["WebhookFunction"]
    allowed = {name.strip() for name in env["SMC_ALLOWED_EVENTS"].split(",")}

    def event_name(name: str) -> str:
        return str(json.loads(body_bytes(load_event(name)))["event"])

    assert event_name("track.json") in allowed
    assert event_name("track_base64.json") in allowed
    assert event_name("track_not_allowed.json") not in allowed


@pytest.mark.parametrize("name", CASE_IDS)
def test_event_has_the_http_api_v2_shape(name: str) -> None:
    event = load_event(name)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /segment"
    assert event["rawPath"] == "/segment"
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/segment"
    assert context["http"]["sourceIp"]
    assert context["http"]["userAgent"] == event["headers"]["user-agent"]
    assert context["requestId"] and isinstance(context["timeEpoch"], int)
    assert isinstance(event["body"], str) and isinstance(event["isBase64Encoded"], bool)


@pytest.mark.parametrize("name", CASE_IDS)
def test_header_names_are_lower_case(name: str) -> None:
    headers = load_event(name)["headers"]
    assert all(key == key.lower() for key in headers), "HTTP API lower-cases header names"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("name", CASE_IDS)
def test_body_decodes(name: str) -> None:
    event = load_event(name)
    body = body_bytes(event)
    assert event["headers"]["content-length"] == str(len(body))
    text = body.decode("utf-8")
    if name == "malformed_json.json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    else:
        assert stringify(json.loads(text)) == body, "bodies are serialised like JSON.stringify"


def test_base64_case_is_base64_encoded() -> None:
    assert load_event("track_base64.json")["isBase64Encoded"] is True
    assert all(not load_event(n)["isBase64Encoded"] for n in CASE_IDS if n != "track_base64.json")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_signatures_verify_with_the_example_secret(case: dict[str, Any]) -> None:
    event = load_event(case["file"])
    headers, body = event["headers"], body_bytes(event)
    if case["auth"] == "signature":
        assert "authorization" not in headers
        assert headers["x-signature"] == signature(body)
    elif case["auth"] == "bearer":
        assert headers["authorization"] == f"Bearer {SECRET['bearerToken']}"
        payload = json.loads(body)
        if isinstance(payload, list):  # Actions signs the first event only
            assert headers["x-signature"] == signature(stringify(payload[0]))
    else:
        assert case["auth"] == "invalid" and case["status"] == 401
        assert "authorization" not in headers
        assert headers["x-signature"] != signature(body)


def test_array_refused_case_carries_a_genuine_first_event_signature() -> None:
    # The danger being tested: the signature is real, but covers array[0] only.
    event = load_event("array_signature_only.json")
    payload = json.loads(body_bytes(event))
    assert isinstance(payload, list) and len(payload) > 1
    assert event["headers"]["x-signature"] == signature(stringify(payload[0]))


def test_message_ids_are_unique_across_all_files() -> None:
    # Replaying every file against one stack must never hit the idempotency table by accident.
    seen: list[str] = []
    for name in CASE_IDS:
        if name == "malformed_json.json":
            continue
        payload = json.loads(body_bytes(load_event(name)))
        events = payload if isinstance(payload, list) else payload.get("batch", [payload])
        seen.extend(event["messageId"] for event in events)
    assert len(seen) == len(set(seen))


def test_example_secret_is_documented_as_example_only() -> None:
    examples = json.loads((EVENTS / "examples.json").read_text())
    assert "EXAMPLE" in examples["_comment"]
    assert set(SECRET) >= {"apiKey", "apiSecret", "sharedSecret", "bearerToken"}
    assert f"{SECRET['apiKey']}:{SECRET['apiSecret']}" == "demo-key:demo-secret"  # the sandbox's account
