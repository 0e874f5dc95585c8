"""The local stack (`make run`, `make demo`): a real process, driven over HTTP, stopped by Ctrl-C."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.front import build_event, http_answer
from devstack.state import free_ports
from tests import support

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
START_TIMEOUT_S = 30


class RunningStack:
    def __init__(self, process: subprocess.Popen[str], state_dir: Path, ports: list[int]) -> None:
        self.process = process
        self.state_dir = state_dir
        self.ports = ports
        self.state: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return str(self.state["webhook_url"])

    def admin(self, path: str) -> Any:
        return requests.get(f"{self.state['sandbox_url']}/_sandbox{path}", timeout=10).json()

    def rows(self) -> list[dict[str, Any]]:
        return list(self.admin("/organizations/demo/lists/segment_events/rows")["rows"])

    def interrupt(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=15)
        return self.process.returncode, out, err


def shell_environment() -> dict[str, str]:
    """This process's environment without what tests/conftest.py sets for the in-process
    function: `make run` starts from a developer's plain shell, which has none of it."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POWERTOOLS_", "AWS_")) and name not in ("SMC_ADMIN_URL",)
    }


def start_stack(state_dir: Path, *extra: str, env: dict[str, str] | None = None) -> RunningStack:
    front, sandbox, moto = free_ports(3)
    command = [sys.executable, "-m", "devstack", "run", "--state-dir", str(state_dir)]
    command += ["--front-port", str(front), "--sandbox-port", str(sandbox), "--moto-port", str(moto), *extra]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**shell_environment(), **(env or {})},
    )
    stack = RunningStack(process, state_dir, [front, sandbox, moto])
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the stack exited with {process.returncode}:\n{out}\n{err}")
        try:
            stack.state = json.loads((state_dir / "stack.json").read_text())
            return stack
        except (OSError, ValueError):
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the stack did not start in time")


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(tmp_path_factory.mktemp("local-stack"))
    yield stack
    if stack.process.poll() is None:
        stack.interrupt()


def post_case(url: str, name: str) -> requests.Response:
    event = json.loads((EVENTS / name).read_text())
    body = event["body"]
    data = base64.b64decode(body) if event["isBase64Encoded"] else body.encode()
    skip = {"host", "content-length", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"}
    headers = {k: v for k, v in event["headers"].items() if k not in skip}
    return requests.post(url, data=data, headers=headers, timeout=30)


def test_a_signed_event_posted_to_the_webhook_url_lands_in_smc(local_stack: RunningStack) -> None:
    # Given the running stack, When Segment's signed track event is posted to the printed URL
    response = post_case(local_stack.url, "track.json")
    # Then the function answers as API Gateway would pass it on, and SMC holds the row
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] == 1
    assert response.headers["apigw-requestid"]
    message_id = json.loads(json.loads((EVENTS / "track.json").read_text())["body"])["messageId"]
    assert message_id in {row["MESSAGE_ID"] for row in local_stack.rows()}
    # And the function's JSON log went to the log file, not the terminal
    log = Path(local_stack.state["log_file"]).read_text()
    assert '"message":"request settled"' in log


def test_a_batch_with_the_bearer_token_and_a_bad_signature(local_stack: RunningStack) -> None:
    assert post_case(local_stack.url, "actions_batch.json").json()["delivered"] == 3
    assert post_case(local_stack.url, "bad_signature.json").status_code == 401


def test_other_routes_get_api_gateways_404(local_stack: RunningStack) -> None:
    base = local_stack.url.removesuffix("/segment")
    assert requests.get(local_stack.url, timeout=5).status_code == 404
    response = requests.post(base + "/other", data=b"{}", timeout=5)
    assert (response.status_code, response.json()) == (404, {"message": "Not Found"})


def test_make_demo_sends_every_case_and_shows_smc(local_stack: RunningStack) -> None:
    # When the demo runs against the stack (twice: the second run is answered from memory)
    demo = [sys.executable, "-m", "devstack", "demo", "--state-dir", str(local_stack.state_dir)]
    first = subprocess.run(demo, cwd=ROOT, capture_output=True, text=True, timeout=60)
    second = subprocess.run(demo, cwd=ROOT, capture_output=True, text=True, timeout=60)
    # Then every status is the expected one and the table shows SMC's state
    assert first.returncode == 0, first.stdout + first.stderr
    cases = json.loads((EVENTS / "cases.json").read_text())
    assert f"All {len(cases)} answers are the expected ones." in first.stdout
    assert "group_add" in first.stdout and "vip members" in first.stdout
    assert second.returncode == 0 and "(replayed)" in second.stdout
    members = local_stack.admin("/organizations/demo/lists/users/segments/vip/members")["members"]
    assert members == []  # group_add then group_remove
    # And a profile, an audience and a transactional send landed in the sandbox
    assert "profiles" in first.stdout and "audience" in first.stdout and "messages" in first.stdout
    profiles = local_stack.admin("/organizations/demo/lists/users/rows")["rows"]
    assert {
        "CUSTOMER_ID": "user_48213",
        "MAIL": "zoe.martin@example.com",
        "FIRSTNAME": "Zoë",
    }.items() <= next(p for p in profiles if p["CUSTOMER_ID"] == "user_48213").items()
    audience = local_stack.admin("/organizations/demo/lists/users/segments/high_value_customers/members")
    assert [m["CUSTOMER_ID"] for m in audience["members"]] == ["user_48213"]
    sent = local_stack.admin("/organizations/demo/journeys/order_confirmation/messages")["messages"]
    assert {m["recipient"] for m in sent} == {"user_48213"} and len(sent) == 2  # track, batch_envelope


def test_a_second_start_is_refused_with_a_clear_message(local_stack: RunningStack, tmp_path: Path) -> None:
    # Same state folder: the lock says which stack runs and how to stop it
    again = start_command(local_stack.state_dir)
    result = subprocess.run(again, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "already running" in result.stderr and str(local_stack.process.pid) in result.stderr
    # Another state folder but a port in use: the message names the port and how to change it
    busy = local_stack.ports[0]
    other = [*start_command(tmp_path), "--front-port", str(busy)]
    result = subprocess.run(other, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"port {busy} (webhook front) is already in use" in result.stderr
    assert "--front-port" in result.stderr


def start_command(state_dir: Path) -> list[str]:
    front, sandbox, moto = free_ports(3)
    return [
        sys.executable,
        "-m",
        "devstack",
        "--state-dir",
        str(state_dir),
        "--front-port",
        str(front),
        "--sandbox-port",
        str(sandbox),
        "--moto-port",
        str(moto),
    ]


def test_ctrl_c_stops_everything_cleanly(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        headers = {"content-type": "application/json"}
        assert requests.post(stack.url, data=b"{}", headers=headers, timeout=10).status_code == 401  # serves
    finally:
        # When Ctrl-C (SIGINT) arrives
        code, out, err = stack.interrupt()
    # Then it exits 0, says so, leaves no stack.json and frees every port
    assert code == 0, err
    assert "Local stack stopped." in out and "Traceback" not in err
    assert not (tmp_path / "stack.json").exists()
    for port in stack.ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def test_the_built_artifact_serves_every_demo_case_when_the_stack_starts_with_artifact(
    tmp_path: Path, lambda_artifact: Path, lambda_runtime: Path
) -> None:
    # Given the stack started as `make run ARTIFACT=1` starts it
    stack = start_stack(tmp_path, "--artifact", str(lambda_artifact), "--runtime-dir", str(lambda_runtime))
    try:
        assert stack.state["artifact"] == str(lambda_artifact)
        # When the demo sends every case through it
        demo = [sys.executable, "-m", "devstack", "demo", "--state-dir", str(tmp_path)]
        result = subprocess.run(demo, cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        code, out, err = stack.interrupt()
    # Then the artifact, under awslambdaric, gives every expected answer, and stops with the stack
    cases = json.loads((EVENTS / "cases.json").read_text())
    assert f"All {len(cases)} answers are the expected ones." in result.stdout, result.stdout + result.stderr
    assert code == 0 and "under awslambdaric" in out, err
    log = Path(stack.state["log_file"]).read_text()
    assert '"message":"request settled"' in log and "Traceback" not in log


def test_the_stack_stops_with_the_command_that_builds_the_artifact_when_the_artifact_folder_is_empty(
    tmp_path: Path,
) -> None:
    command = [*start_command(tmp_path / "state"), "--artifact", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "make run ARTIFACT=1" in result.stderr, result.stderr


def test_pointing_at_a_real_tenant_is_one_setting(tmp_path: Path, sandbox_server: Any) -> None:
    # Given an "SMC tenant" elsewhere (the test session's sandbox stands in for it)
    from sandbox import seed_default

    sandbox_server.reset()
    seed_default(sandbox_server)
    env = {
        "LOCAL_SMC_ADMIN_URL": sandbox_server.base_url,
        "LOCAL_SMC_ORGANIZATION": "demo",
        "LOCAL_SMC_API_KEY": "demo-key",
        "LOCAL_SMC_API_SECRET": "demo-secret",
    }
    # (a real tenant is on *.slgnt.us/eu; a loopback stand-in must be allowed explicitly)
    stack = start_stack(tmp_path, "--env", "SMC_EXTRA_ALLOWED_HOSTS=127.0.0.1", env=env)
    try:
        assert stack.state["sandbox_url"] is None  # no local sandbox started
        assert post_case(stack.url, "identify.json").status_code == 200
        assert len(sandbox_server.rows("demo", "segment_events")) == 1
    finally:
        code, out, _ = stack.interrupt()
    assert code == 0 and "REAL SMC" in out


def test_a_real_tenant_needs_its_credentials(tmp_path: Path) -> None:
    command = start_command(tmp_path)
    env = {**os.environ, "LOCAL_SMC_ADMIN_URL": "https://acme.slgnt.eu"}
    env.pop("LOCAL_SMC_API_KEY", None)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2 and "LOCAL_SMC_API_KEY" in result.stderr


# -- the front's translation, without a process -------------------------------------------------
def test_each_request_becomes_the_exact_http_api_v2_event() -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("X-Custom", "a"),
        ("x-custom", "b"),
        ("Cookie", "k=v; x=y"),
    ]
    headers.append(("Host", "127.0.0.1:3000"))
    event = build_event("POST", "/segment?debug=1", headers, b'{"a":1}', "127.0.0.1", 3000, request_id="rid")
    assert event["version"] == "2.0" and event["routeKey"] == "POST /segment"
    assert event["rawPath"] == "/segment" and event["rawQueryString"] == "debug=1"
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["x-custom"] == "a,b"  # duplicates joined, names lower-cased
    assert event["cookies"] == ["k=v", "x=y"] and "cookie" not in event["headers"]
    assert event["queryStringParameters"] == {"debug": "1"}
    context = event["requestContext"]
    assert context["requestId"] == "rid" and isinstance(context["timeEpoch"], int)
    assert context["http"] == {
        "method": "POST",
        "path": "/segment",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "",
    }
    assert (event["body"], event["isBase64Encoded"]) == ('{"a":1}', False)
    binary = build_event("POST", "/segment", [], b"\xff\xfe", "127.0.0.1", 3000)
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\xff\xfe"


def test_the_functions_answer_becomes_the_http_response() -> None:
    status, headers, body = http_answer(
        {"statusCode": 503, "headers": {"Retry-After": "2"}, "body": '{"x":1}', "cookies": ["c=1"]}
    )
    assert status == 503 and ("Retry-After", "2") in headers and ("set-cookie", "c=1") in headers
    assert body == b'{"x":1}' and ("content-type", "application/json") in headers
    assert http_answer({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True})[2] == b"hi"
    assert http_answer({"ok": True}) == (200, [("content-type", "application/json")], b'{"ok": true}')


def test_the_example_values_are_the_events_ones() -> None:
    from devstack.examples import example_secret

    secret = json.loads((EVENTS / "examples.json").read_text())["secret"]
    assert example_secret() == secret
    assert secret["sharedSecret"] != support.SHARED_SECRET  # the stack never reuses the tests' values


def test_missing_example_files_stop_the_stack_with_the_command_that_restores_them(tmp_path):
    import pytest

    from devstack.examples import ExamplesError, example_env, example_secret

    with pytest.raises(ExamplesError, match="make events"):
        example_secret(tmp_path)
    (tmp_path / "env.json").write_text('{"OtherFunction": {}}')
    with pytest.raises(ExamplesError, match="WebhookFunction"):
        example_env(tmp_path)
    assert example_secret()["sharedSecret"] == "example-shared-secret"
