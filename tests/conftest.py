"""Shared fixtures: moto in server mode and the SMC sandbox, both over real HTTP on loopback."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.aws_emulator import dynamodb_as_aws_runs_it
from devstack.state import free_ports
from tests import support

# Set before anything imports boto3 or Powertools: clients read these when created.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "POWERTOOLS_SERVICE_NAME": "segment-smc-destination",
        "POWERTOOLS_METRICS_NAMESPACE": "SegmentSmcDestination",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",  # the leak scan must see every level
    }
)
for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)

CAPTURED_LOG_LINES: list[str] = []
SECRET_VALUES = (
    support.SHARED_SECRET,
    support.PREVIOUS_SHARED_SECRET,
    support.BEARER_TOKEN,
    support.PREVIOUS_BEARER_TOKEN,
    support.SMC_SECRET,
    support.PII_EMAIL,
    support.PII_TRAIT,
)


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        CAPTURED_LOG_LINES.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def capture_logs() -> Iterator[None]:
    """Every line the handler logs, formatted exactly as CloudWatch would get it."""
    from handler.observability import logger

    handler = _Capture()
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    dynamodb_as_aws_runs_it()
    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Any]:
    from sandbox import SmcSandbox

    sandbox = SmcSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """A sandbox of the test's own (default seed), for tests of the sandbox itself."""
    from sandbox import SmcSandbox, seed_default

    with SmcSandbox() as sb:
        seed_default(sb)
        yield sb


@pytest.fixture
def http() -> Iterator[Any]:
    """An HTTP session carrying the default seed's SMC key."""
    import requests

    from tests.sandbox_http import API_KEY

    with requests.Session() as session:
        session.headers.update(API_KEY)
        yield session


@pytest.fixture(scope="session")
def lambda_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact, built once per run by `sam build`'s recipe for this machine's architecture,
    outside the repository (`make lambda-artifact`)."""
    from devstack.artifact import build_artifact

    return build_artifact(tmp_path_factory.mktemp("lambda") / "task")


@pytest.fixture(scope="session")
def lambda_runtime() -> Path:
    """The Lambda runtime's own packages (SDK, awslambdaric), as `make lambda-runtime` installs them."""
    from devstack.artifact import install_runtime

    return install_runtime()


def put_secret(secret_id: str, value: dict[str, Any]) -> None:
    import boto3

    client = boto3.client("secretsmanager")
    try:
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
    except client.exceptions.ResourceNotFoundException:
        client.create_secret(Name=secret_id, SecretString=json.dumps(value))


def default_secret() -> dict[str, Any]:
    return {
        "apiKey": support.SMC_KEY,
        "apiSecret": support.SMC_SECRET,
        "sharedSecret": support.SHARED_SECRET,
        "bearerToken": support.BEARER_TOKEN,
    }


def create_tables(*names: str) -> None:
    import boto3

    from devstack.tables import create_table

    client = boto3.client("dynamodb")
    for name in names:
        create_table(client, name)


class Stack:
    """One test's deployment: its own secret, table, settings and a freshly seeded sandbox."""

    def __init__(self, sandbox: Any, secret_id: str, table: str) -> None:
        self.sandbox = sandbox
        self.secret_id = secret_id
        self.table = table
        self.state_table = f"state-{table}"

    def rows(self, list_name: str = support.EVENTS_LIST) -> list[dict[str, Any]]:
        return list(self.sandbox.rows(support.ORG, list_name))

    def members(self, segment: str = "vip", list_name: str = "users") -> list[dict[str, Any]]:
        return list(self.sandbox.segment_members(support.ORG, list_name, segment))

    def smc_calls(self, path_contains: str = "/data") -> list[Any]:
        return [r for r in self.sandbox.requests_log if path_contains in r.path]

    def set_secret(self, **changes: Any) -> None:
        value = default_secret()
        value.update(changes)
        put_secret(self.secret_id, {k: v for k, v in value.items() if v is not None})

    def set_env(self, **env: str) -> None:
        from handler.app import reset_runtime

        os.environ.update(env)
        reset_runtime()


@pytest.fixture
def stack(moto_endpoint: str, sandbox_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    from handler.app import reset_runtime
    from sandbox import seed_default

    suffix = uuid.uuid4().hex[:8]
    secret_id = f"segment-smc/test-{suffix}"
    table = f"idempotency-{suffix}"
    put_secret(secret_id, default_secret())
    create_tables(table, f"state-{table}")
    sandbox_server.reset()
    seed_default(sandbox_server)
    sandbox_server.add_service_account(support.SMC_KEY, support.SMC_SECRET)
    env = {
        "SMC_ADMIN_URL": sandbox_server.base_url,
        "SMC_EXTRA_ALLOWED_HOSTS": "127.0.0.1",
        "SMC_ORGANIZATION": support.ORG,
        "SMC_SECRET_ID": secret_id,
        "IDEMPOTENCY_TABLE": table,
        "STATE_TABLE": f"state-{table}",
    }
    for name in (
        "SMC_EVENTS_LIST",
        "SMC_ALLOWED_EVENTS",
        "SMC_SEND_PAGE_EVENTS",
        "SMC_SEND_SCREEN_EVENTS",
        "SMC_SEND_ALIAS_EVENTS",
        "SMC_SEND_GROUP_EVENTS",
        "RESPONSE_DEADLINE_MS",
        "SMC_PROFILE_LIST",
        "SMC_PROFILE_KEY",
        "SMC_PROFILE_FIELDS",
        "SMC_PROFILE_MODE",
        "SMC_AUDIENCES",
        "SMC_TRANSACTIONAL_EVENTS",
        "SMC_TRANSACTIONAL_LANGUAGE",
        "SMC_DELETE_PROFILES",
        # Queued mode: a test that turns it on (stack.set_env) must not leave it on for the next.
        "DELIVERY_MODE",
        "DELIVERY_QUEUE_URL",
        "DEAD_LETTER_QUEUE_URL",
        "MAX_EVENT_AGE_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    yield Stack(sandbox_server, secret_id, table)
    sandbox_server.clear_faults()
    reset_runtime()


@pytest.fixture
def aws_proxy(stack: Stack, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`aws_proxy("dynamodb" | "secretsmanager")` puts a fault proxy (tests/aws_fault_proxy.py) in
    front of that service for this test's function; its `mode` decides what the service does."""
    from tests.aws_fault_proxy import AwsFaultProxy

    proxies: list[AwsFaultProxy] = []

    def make(service: str) -> AwsFaultProxy:
        proxy = AwsFaultProxy(moto_endpoint, service).start()  # type: ignore[arg-type]
        proxy.hang_s = 12.0
        proxies.append(proxy)
        var = "AWS_ENDPOINT_URL_DYNAMODB" if service == "dynamodb" else "AWS_ENDPOINT_URL_SECRETS_MANAGER"
        monkeypatch.setenv(var, proxy.url)
        stack.set_env()
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


_SECRET_NAMES = {
    getattr(support, name): name
    for name in (
        "SHARED_SECRET",
        "PREVIOUS_SHARED_SECRET",
        "BEARER_TOKEN",
        "PREVIOUS_BEARER_TOKEN",
        "SMC_SECRET",
        "PII_EMAIL",
        "PII_TRAIT",
    )
}


def find_leaks(texts: Iterable[str]) -> list[str]:
    """An excerpt of every text that carries a secret, e-mail address or trait value; the value
    itself is masked (`<BEARER_TOKEN>`), so the report does not leak it again."""
    found: list[str] = []
    for text in texts:
        for value in SECRET_VALUES:
            at = text.find(value)
            if at >= 0:
                label = _SECRET_NAMES.get(value, "SECRET")
                masked = (
                    text[max(0, at - 100) : at] + f"<{label}>" + text[at + len(value) : at + len(value) + 100]
                )
                found.append(masked.replace(value, f"<{label}>"))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The leak scan: no secret, e-mail address or trait value in any log line or any response
    (`support.invoke`) of the whole run. A hit fails the run and prints masked excerpts."""
    leaks = [f"log: {x}" for x in find_leaks(CAPTURED_LOG_LINES)]
    leaks += [f"response: {x}" for x in find_leaks(support.RESPONSES)]
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        write = reporter.write_line if reporter is not None else print
        write(f"\nLEAK SCAN FAILED: {len(leaks)} log lines or answers carry a test secret or personal data:")
        for excerpt in leaks[:20]:
            write(f"  {excerpt}")
        session.exitstatus = 1
