"""Segment's own Webhooks (Actions) destination code (npm, `make segment-sender`) sending to the local stack.

`tools/segment-sender/send.js` runs the `webhook` destination of `@segment/action-destinations`
with `@segment/actions-core`, as Segment's cloud does: its mapping, request client and its own
X-Signature code. The stack (`python -m devstack`, a real process on free ports) uses the example
credentials of `events/examples.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.examples import example_secret
from tests.test_local_stack import ROOT, RunningStack, start_stack

SENDER = ROOT / "tools" / "segment-sender"
UNICODE = "Zoë ☕ 🚀 “quoted” \\ 日本語 \u2028"


def _require_sender() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: Segment's destination code cannot run here")
    if not (SENDER / "node_modules" / ".installed").exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: Segment's packages cannot be installed here")
        pytest.fail(f"Segment's packages are not installed in {SENDER}: run `make segment-sender` (npm ci)")


@pytest.fixture(scope="module")
def segment_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    _require_sender()
    stack = start_stack(tmp_path_factory.mktemp("segment-sender"))
    yield stack
    if stack.process.poll() is None:
        stack.interrupt()


def events(count: int) -> list[dict[str, Any]]:
    """`count` Segment events (track and identify, non-ASCII and emoji in their data)."""
    made: list[dict[str, Any]] = []
    for n in range(count):
        event: dict[str, Any] = {
            "type": "track" if n % 2 == 0 else "identify",
            "messageId": f"segment-sender-{uuid.uuid4()}",
            "userId": f"user-{n}-ünïcødé",
            "timestamp": "2026-11-27T10:15:30.123Z",
            "context": {"library": {"name": "analytics-node", "version": "2.1.0"}, "locale": "fr-CH"},
        }
        data = {"label": f"{UNICODE} #{n}", "emoji": "👩‍💻🇨🇭", "price": 9.5}
        if event["type"] == "track":
            event.update(event="Product Viewed", properties=data)
        else:
            event["traits"] = data
        made.append(event)
    return made


def send(stack: RunningStack, mode: str, sent: list[dict[str, Any]], *flags: str) -> dict[str, Any]:
    """Run send.js; its answer: {"status", "body", "sent": {"headers", "events"}}."""
    secret = example_secret()
    env = {
        **os.environ,
        "SEGMENT_SHARED_SECRET": secret["sharedSecret"],
        "SEGMENT_BEARER_TOKEN": secret["bearerToken"],
    }
    command = ["node", "send.js", mode, "--url", stack.url, *flags]
    result = subprocess.run(
        command, cwd=SENDER, input=json.dumps(sent), capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    assert answer["sent"]["events"] == (1 if mode == "single" else len(sent))
    return answer


def assert_in_smc_intact(stack: RunningStack, sent: list[dict[str, Any]]) -> None:
    rows = {row["MESSAGE_ID"]: row for row in stack.rows()}
    for event in sent:
        row = rows[event["messageId"]]
        assert row["USER_ID"] == event["userId"]
        assert json.loads(row["PROPERTIES"]) == event.get("properties", event.get("traits"))


def metric_total(log_file: Path, name: str) -> float:
    """The sum of one count metric over the function's EMF lines."""
    total = 0.0
    for line in log_file.read_text(encoding="utf-8").splitlines():
        if line.startswith('{"_aws"'):
            total += sum(json.loads(line).get(name, []))
    return total


def test_single_event_is_delivered_when_segment_signs_it_with_the_shared_secret(segment_stack):
    sent = events(1)
    answer = send(segment_stack, "single", sent)
    assert answer["status"] == 200 and answer["body"]["delivered"] == 1, answer
    assert "x-signature" in answer["sent"]["headers"]
    assert "authorization" not in answer["sent"]["headers"]
    assert_in_smc_intact(segment_stack, sent)


def test_batch_is_delivered_when_the_mapping_sends_a_bearer_header(segment_stack):
    sent = events(3)
    answer = send(segment_stack, "batch", sent, "--bearer")
    assert answer["status"] == 200 and answer["body"]["delivered"] == 3, answer
    assert {"authorization", "x-signature"} <= set(answer["sent"]["headers"])
    assert_in_smc_intact(segment_stack, sent)


def test_batch_is_refused_with_the_fix_when_only_the_shared_secret_is_set(segment_stack):
    log_file = Path(segment_stack.state["log_file"])
    before = metric_total(log_file, "BatchSignedFirstEventOnly")
    sent = events(3)
    answer = send(segment_stack, "batch", sent)
    assert answer["status"] == 401, answer
    message = answer["body"]["message"]
    assert "covers only the first event" in message
    assert "Authorization: Bearer <token>" in message and "bearerToken" in message
    secret = example_secret()
    assert secret["sharedSecret"] not in message and secret["bearerToken"] not in message
    stored = {row["MESSAGE_ID"] for row in segment_stack.rows()}
    assert not stored & {event["messageId"] for event in sent}
    assert metric_total(log_file, "BatchSignedFirstEventOnly") == before + 1


def test_batch_is_delivered_without_a_bearer_when_the_signature_covers_the_whole_body(segment_stack):
    sent = events(3)
    answer = send(segment_stack, "batch", sent, "--sign-full-body")
    assert answer["status"] == 200 and answer["body"]["delivered"] == 3, answer
    assert "authorization" not in answer["sent"]["headers"]
    assert_in_smc_intact(segment_stack, sent)
