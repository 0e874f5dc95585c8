"""The benchmark's servers (SMC sandbox, moto) as subprocesses, their AWS resources, and the
environment a measured process needs to reach them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from devstack.state import free_ports
from devstack.tables import create_table

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"  # scratch files (git-ignored)
ORG = "demo"
SMC_KEY, SMC_SECRET = "demo-key", "demo-secret"  # the sandbox's default seed
EVENTS_LIST = "segment_events"
USERS_LIST = "users"
SEGMENTS = ("vip", "newsletter")  # static segments on `users` the workload's group calls target
BEARER_TOKEN = "bench-bearer-token"  # noqa: S105 - the bench's own throwaway secret
SHARED_SECRET = "bench-shared-secret"  # noqa: S105 - likewise

# What every measured process gets: production-like (INFO logs, what Lambda sets, so Powertools and
# the X-Ray SDK behave as deployed), tracing off unless a measurement turns it on.
BASE_ENV = {
    "LAMBDA_TASK_ROOT": str(ROOT),
    "AWS_LAMBDA_FUNCTION_NAME": "segment-smc-destination-webhook",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "POWERTOOLS_SERVICE_NAME": "segment-smc-destination",
    "POWERTOOLS_METRICS_NAMESPACE": "SegmentSmcDestination",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "PYTHONHASHSEED": "0",
}


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


@dataclass(frozen=True)
class Stack:
    """Where the servers listen and which secret and table the handler uses."""

    sandbox_url: str
    moto_url: str
    secret_id: str
    table: str

    @property
    def api_url(self) -> str:
        return f"{self.sandbox_url}/Portal/Api"

    def env(self, **extra: str) -> dict[str, str]:
        """The full environment for a measured process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "SMC_"))}
        env.update(BASE_ENV)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.moto_url,
                "SMC_ADMIN_URL": self.sandbox_url,
                "SMC_EXTRA_ALLOWED_HOSTS": "127.0.0.1",
                "SMC_ORGANIZATION": ORG,
                "SMC_SECRET_ID": self.secret_id,
                "IDEMPOTENCY_TABLE": self.table,
                "STATE_TABLE": f"state-{self.table}",
                # BENCH_HANDLER_ROOT: measure the `handler` package of another tree (e.g. an older commit).
                "PYTHONPATH": os.pathsep.join(
                    p for p in (os.environ.get("BENCH_HANDLER_ROOT"), str(ROOT)) if p
                ),
            }
        )
        env.update(extra)
        return env

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Stack:
        return cls(**json.loads(text))


# -- the sandbox's admin API (works whether it runs in a thread or a subprocess) ----------------
def admin(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{stack.sandbox_url}/_sandbox/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def reset_sandbox(stack: Stack) -> None:
    """Empty lists and log, the default seed plus the workload's segments, no latency; and no
    ordering records left from earlier rounds (below)."""
    admin(stack, "POST", "reset", {"seed": "default"})
    segments = [{"org": ORG, "list": USERS_LIST, "api_name": name} for name in SEGMENTS if name != "vip"]
    admin(stack, "POST", "seed", {"segments": segments})
    empty_state_table(stack)


def empty_state_table(stack: Stack) -> None:
    """Every round meets a small state table, as it meets a small SMC. DynamoDB's latency does not
    grow with a table's size, but moto's TransactWriteItems backs the whole table up (a deep copy)
    before it writes: with the records of every earlier round kept, the emulator, not the product,
    made order safety look ever slower as the run went on. The rounds' ids are new each time, so
    no round depends on an earlier one's records."""
    import boto3

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=stack.moto_url,
        region_name=BASE_ENV["AWS_REGION"],
        aws_access_key_id=BASE_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=BASE_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    table = f"state-{stack.table}"
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="id"):
        keys = [{"DeleteRequest": {"Key": {"id": item["id"]}}} for item in page.get("Items", [])]
        for start in range(0, len(keys), 25):
            dynamodb.batch_write_item(RequestItems={table: keys[start : start + 25]})


def set_latency(stack: Stack, seconds: float) -> None:
    admin(stack, "PUT", "latency", {"latency_s": seconds})


def clear_log(stack: Stack) -> None:
    admin(stack, "DELETE", "requests")


def smc_log(stack: Stack) -> list[dict[str, Any]]:
    """The SMC data calls the sandbox saw since the log was last cleared."""
    return [r for r in admin(stack, "GET", "requests")["requests"] if "/data" in r["path"]]


def secret_value() -> dict[str, str]:
    return {
        "apiKey": SMC_KEY,
        "apiSecret": SMC_SECRET,
        "sharedSecret": SHARED_SECRET,
        "bearerToken": BEARER_TOKEN,
    }


def create_aws_resources(moto_url: str) -> tuple[str, str]:
    """A fresh secret, idempotency table and state table (`state-<table>`) in moto; returns
    (secret id, idempotency table name)."""
    import boto3

    suffix = uuid.uuid4().hex[:8]
    kwargs: dict[str, Any] = {
        "endpoint_url": moto_url,
        "region_name": BASE_ENV["AWS_REGION"],
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    secret_id, table = f"segment-smc/bench-{suffix}", f"idempotency-bench-{suffix}"
    boto3.client("secretsmanager", **kwargs).create_secret(
        Name=secret_id, SecretString=json.dumps(secret_value())
    )
    dynamodb = boto3.client("dynamodb", **kwargs)
    create_table(dynamodb, table)
    create_table(dynamodb, f"state-{table}")
    return secret_id, table


@contextlib.contextmanager
def servers(log_dir: Path = OUT) -> Iterator[Stack]:
    """Start the SMC sandbox and moto as subprocesses on loopback; stop them afterwards."""
    log_dir.mkdir(parents=True, exist_ok=True)
    sandbox_port, moto_port = free_ports(2)
    python = sys.executable
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context((log_dir / f"{name}.log").open("wb")) for name in ("sandbox", "moto")]
        try:
            sandbox = subprocess.Popen(
                [python, "-m", "sandbox", "--port", str(sandbox_port), "--seed", "default"],
                cwd=ROOT,
                stdout=logs[0],
                stderr=subprocess.STDOUT,
            )
            processes.append(sandbox)
            moto = subprocess.Popen(
                [python, "-m", "devstack.aws_emulator", "-H", "127.0.0.1", "-p", str(moto_port)],
                cwd=ROOT,
                stdout=logs[1],
                stderr=subprocess.STDOUT,
                env={**os.environ, **BASE_ENV},
            )
            processes.append(moto)
            sandbox_url, moto_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{moto_port}"
            _wait_http(f"{sandbox_url}/Portal/Api/status", sandbox)
            _wait_http(f"{moto_url}/moto-api/", moto)
            secret_id, table = create_aws_resources(moto_url)
            result = Stack(sandbox_url, moto_url, secret_id, table)
            reset_sandbox(result)
            yield result
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
