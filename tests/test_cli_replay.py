"""`smc-destination replay`: the Lambda's code path, batches, checkpoint, resume without resending."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from handler.cli import main
from handler.cli.source import read_source
from sandbox import Fault
from tests import support

BIN = Path(sys.executable).parent


def write_ndjson(path: Path, events: list[Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def tracks(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [support.track(messageId=f"{prefix}-{n}", userId=f"user-{n}") for n in range(count)]


def loaded_rows(stack: Any) -> int:
    """Rows SMC accepted into the events list, over every load request the sandbox answered 200."""
    return sum(
        r.rows or 0
        for r in stack.sandbox.requests_log
        if r.path.endswith(f"/lists/{support.EVENTS_LIST}/data/load") and r.status == 200 and not r.fault
    )


def message_ids(stack: Any) -> list[str]:
    return sorted(row["MESSAGE_ID"] for row in stack.rows())


def summary(out: str) -> dict[str, int]:
    """The per-outcome counts of a replay summary."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"  (delivered|filtered|duplicate|rejected|retried|would send) +(\d+)", line)
        if match:
            found[match[1]] = int(match[2])
    return found


def checkpoint_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.with_name(path.name + ".checkpoint.json").read_text()))


def test_replays_a_file_in_batches_then_has_nothing_to_do(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tracks(25)
    events[3]["integrations"] = {"Selligent Marketing Cloud": False}
    events[7] = {"type": "track", "userId": "u", "messageId": "no-event-name"}
    path = write_ndjson(tmp_path / "events.ndjson", events)
    # When the file is replayed in batches of 10
    assert main(["replay", str(path), "--batch-size", "10", "--failures", str(tmp_path / "f.ndjson")]) == 1
    captured = capsys.readouterr()
    # Then every event went through admit → deliver once, with one outcome each
    assert len(stack.rows()) == 23 and loaded_rows(stack) == 23
    assert summary(captured.out) == {
        "delivered": 23,
        "filtered": 1,
        "duplicate": 0,
        "rejected": 1,
        "retried": 0,
    }
    assert "(track requires event x1)" in captured.out
    assert "batch 3/3" in captured.err  # the progress bar, on stderr
    assert checkpoint_of(path)["done"] == [[0, 25]]
    failure = json.loads((tmp_path / "f.ndjson").read_text())
    assert failure["messageId"] == "no-event-name" and failure["outcome"] == "rejected"
    # When it runs again, Then nothing is sent
    stack.sandbox.clear_requests_log()
    assert main(["replay", str(path), "--batch-size", "10"]) == 0
    assert "nothing to do: all 25 events" in capsys.readouterr().out
    assert stack.sandbox.requests_log == []


def test_a_retryable_failure_mid_way_then_resume_delivers_each_event_once(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", tracks(45))
    replay = ["replay", str(path), "--batch-size", "10", "--timeout", "1"]
    # Given two batches delivered
    assert main([*replay, "--max-batches", "2"]) == 0
    assert "stopped after 2 batch(es): 25 event(s) left" in capsys.readouterr().out
    assert checkpoint_of(path)["done"] == [[0, 20]]
    # When SMC then fails retryably (503 on every load)
    stack.sandbox.inject(Fault(status=503, times=-1, path_contains="/data/load"))
    assert main(replay) == 75
    out = capsys.readouterr().out
    # Then the batch is reported retried, not recorded, and the replay stops there
    assert summary(out)["retried"] == 10 and "run the same command again to resume" in out
    assert checkpoint_of(path)["done"] == [[0, 20]]
    assert len(stack.rows()) == 20
    # When SMC is back and the same command runs again
    stack.sandbox.clear_faults()
    assert main(replay) == 0
    assert "settled before this run: 20; settled now: 45/45" in capsys.readouterr().out
    # Then SMC holds each event once, and was sent each one exactly once
    assert message_ids(stack) == sorted(f"r-{n}" for n in range(45))
    assert loaded_rows(stack) == 45


def test_ctrl_c_finishes_the_batch_in_flight_and_resume_sends_the_rest_once(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", tracks(40))
    stack.sandbox.latency_s = 0.25  # each batch takes a while
    env = {
        **os.environ,
        "SMC_API_SECRET": support.SMC_SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    command = [str(BIN / "smc-destination"), "replay", str(path), "--batch-size", "5"]
    command += ["--api-key", support.SMC_KEY]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = path.with_name(path.name + ".checkpoint.json")
    deadline = time.monotonic() + 20
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # When Ctrl-C arrives after the first batch
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, out + err
    assert "stopping after the batch in flight" in err and "interrupted:" in out
    done = checkpoint_of(path)["done"]
    assert done[0][0] == 0 and 5 <= done[0][1] < 40
    # Then the resumed replay sends only the rest: every event reached SMC exactly once
    stack.sandbox.latency_s = 0.0
    assert main(["replay", str(path), "--batch-size", "5"]) == 0
    assert message_ids(stack) == sorted(f"r-{n}" for n in range(40))
    assert loaded_rows(stack) == 40


def test_dry_run_sends_and_records_nothing(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [*tracks(4), support.group("ADD"), {"type": "nonsense", "userId": "x"}]
    path = write_ndjson(tmp_path / "events.ndjson", events)
    stack.sandbox.clear_requests_log()
    monkeypatch.delenv("SMC_SECRET_ID")  # a dry run needs the settings, not the secret
    assert main(["replay", str(path), "--dry-run"]) == 1  # one event would be rejected
    out = capsys.readouterr().out
    assert summary(out)["would send"] == 5 and summary(out)["rejected"] == 1
    assert "SMC calls it would make: 2" in out
    assert [r for r in stack.sandbox.requests_log if "/data" in r.path] == []
    assert not path.with_name(path.name + ".checkpoint.json").exists()


def test_reads_arrays_batches_queue_messages_and_sqs_exports(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tracks(6, "w")
    sqs_body = json.dumps({"v": 1, "receivedAt": "2026-11-27T10:00:00.000Z", "events": events[4:6]})
    document = [
        events[0],
        {"batch": events[1:3], "context": {}},
        {"v": 1, "events": [events[3]]},
        {"Messages": [{"MessageId": "1", "Body": sqs_body}]},
    ]
    path = tmp_path / "dlq.json"
    path.write_text(json.dumps(document, indent=2))
    assert [item.event["messageId"] for item in read_source(path).items] == [f"w-{n}" for n in range(6)]
    assert main(["replay", str(path), "--quiet"]) == 0
    assert message_ids(stack) == [f"w-{n}" for n in range(6)]
    assert capsys.readouterr().err == ""  # --quiet: no progress bar


def test_a_checkpoint_never_applies_to_other_content(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", tracks(3))
    assert main(["replay", str(path)]) == 0
    write_ndjson(path, tracks(4, "other"))
    assert main(["replay", str(path)]) == 2
    assert "was made for other content" in capsys.readouterr().err
    assert main(["replay", str(path), "--restart"]) == 0
    assert len(stack.rows()) == 7


def test_unreadable_lines_are_rejected_and_recorded(
    stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps(tracks(1)[0]) + "\n{broken\n\n" + json.dumps(tracks(2, "z")[1]) + "\n")
    assert main(["replay", str(path)]) == 1
    assert "line 2 is not valid JSON" in capsys.readouterr().out
    assert checkpoint_of(path)["done"] == [[0, 3]]
    assert main(["replay", "/nonexistent/file.ndjson"]) == 2
