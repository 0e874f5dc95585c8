"""Start, seed, serve and stop the local stack (everything in this one process, on loopback).

Order: lock the state folder, check the ports, start moto (create the secret and the idempotency
table), start and seed the SMC sandbox (unless a real SMC tenant is configured), point the
function's environment at them, start the front, then publish `stack.json` and print where to look.
The front calls the handler in-process, or, with `StackConfig.artifact` (`make run ARTIFACT=1`),
the built artifact running under awslambdaric in its own process (`devstack.artifact`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from devstack import HOST, ROUTE
from devstack.artifact import RUNTIME_DIR, ArtifactFunction, FunctionConfig
from devstack.examples import (
    AUDIENCE_SEGMENT,
    EXAMPLE_CUSTOMER,
    ORDER_JOURNEY,
    STATIC_SEGMENT,
    USERS_LIST,
    example_env,
    example_secret,
)
from devstack.front import Invoke
from devstack.state import Port, StackError, StackLock, check_ports
from devstack.tables import create_table

SECRET_ID = "segment-smc-destination/local"  # noqa: S105 - a name, not a secret
TABLE = "segment-smc-destination-idempotency-local"
STATE_TABLE = "segment-smc-destination-state-local"
REGION = "us-east-1"
# The function's own variables that template.yaml sets in Globals.
POWERTOOLS_ENV = {
    "POWERTOOLS_SERVICE_NAME": "segment-smc-destination",
    "POWERTOOLS_METRICS_NAMESPACE": "SegmentSmcDestination",
    "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon on a laptop
}


def aws_env(endpoint: str) -> dict[str, str]:
    """How the function reaches the AWS emulator: its endpoint and throw-away credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def function_settings(
    example: dict[str, str], smc_url: str, secret_id: str, tables: tuple[str, str], *, loopback_smc: bool
) -> dict[str, str]:
    """The function's own variables: the template's Powertools ones, the example settings
    (`devstack.examples.example_env`), and where SMC, the secret and the tables (idempotency,
    state) are."""
    env = {**POWERTOOLS_ENV, **example, "SMC_ADMIN_URL": smc_url}
    env.update({"SMC_SECRET_ID": secret_id, "IDEMPOTENCY_TABLE": tables[0], "STATE_TABLE": tables[1]})
    if loopback_smc:
        env["SMC_EXTRA_ALLOWED_HOSTS"] = HOST
    return env


@dataclass(slots=True)
class RealSmc:
    """A real SMC tenant instead of the sandbox."""

    admin_url: str
    organization: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)


@dataclass(slots=True)
class StackConfig:
    """Ports, folders and where SMC is."""

    front_port: int
    sandbox_port: int
    moto_port: int
    state_dir: Path
    log_file: Path | None = None  # None: <state dir>/function.log
    real_smc: RealSmc | None = None
    env_overrides: dict[str, str] = field(default_factory=dict)
    artifact: Path | None = None  # a built artifact to serve under awslambdaric instead of the source tree
    runtime_dir: Path | None = None  # the runtime's packages for it (None: `devstack.artifact.RUNTIME_DIR`)


class LocalStack:
    """The running pieces; `start()` then `wait()` (until Ctrl-C) then `stop()`."""

    def __init__(self, config: StackConfig, out: TextIO | None = None) -> None:
        self.config = config
        self.out = out or sys.stdout
        self.lock = StackLock(config.state_dir)
        self.log_path = config.log_file or config.state_dir / "function.log"
        self.secret = example_secret()
        self.env = example_env()
        self.env.update(config.env_overrides)
        self._moto: Any = None
        self._sandbox: Any = None
        self._front: Any = None
        self._function: ArtifactFunction | None = None  # the artifact's environment, when serving one
        self._function_env: dict[str, str] = {}
        self._log: TextIO | None = None
        self._log_handler: logging.StreamHandler[Any] | None = None
        self._log_stream: Any = None
        self._stopping = threading.Event()

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring everything up, or raise `StackError` with a message for the user."""
        self.lock.acquire()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _ports(self) -> list[Port]:
        cfg = self.config
        ports = [
            Port("webhook front", cfg.front_port, "--front-port", "LOCAL_FRONT_PORT"),
            Port("AWS emulator", cfg.moto_port, "--moto-port", "LOCAL_AWS_PORT"),
        ]
        if cfg.real_smc is None:
            ports.append(Port("SMC sandbox", cfg.sandbox_port, "--sandbox-port", "LOCAL_SMC_PORT"))
        return ports

    def _start(self) -> None:
        ports = self._ports()
        if len({p.number for p in ports}) < len(ports):
            raise StackError("the ports must differ: " + ", ".join(f"{p.name} {p.number}" for p in ports))
        check_ports(HOST, ports)
        # Before anything imports `handler` (the sandbox's seed reads handler.schema): Powertools
        # reads its namespace and service when handler.observability is first imported.
        os.environ.update(POWERTOOLS_ENV)
        self._start_moto()
        smc_url = self._start_smc()
        self._configure_function(smc_url)
        self._start_front()
        self.lock.write_state(self.describe())

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from devstack.aws_emulator import dynamodb_as_aws_runs_it

        dynamodb_as_aws_runs_it()

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per AWS call on the terminal
        self._moto = ThreadedMotoServer(ip_address=HOST, port=self.config.moto_port, verbose=False)
        self._moto.start()
        os.environ.update(aws_env(self._aws_endpoint))
        os.environ.update({"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)  # never a real account
        import boto3

        secret = dict(self.secret)
        if self.config.real_smc is not None:
            secret["apiKey"] = self.config.real_smc.api_key
            secret["apiSecret"] = self.config.real_smc.api_secret
        boto3.client("secretsmanager").create_secret(Name=SECRET_ID, SecretString=json.dumps(secret))
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, TABLE)
        create_table(dynamodb, STATE_TABLE)

    def _start_smc(self) -> str:
        if self.config.real_smc is not None:
            self.env["SMC_ORGANIZATION"] = self.config.real_smc.organization
            return self.config.real_smc.admin_url
        from handler.schema import EVENTS_LIST_COLUMNS
        from sandbox import SmcSandbox
        from sandbox.state import seed_users

        sandbox = SmcSandbox(HOST, self.config.sandbox_port)
        sandbox.start()
        self._sandbox = sandbox
        org = self.env.get("SMC_ORGANIZATION", "demo")
        sandbox.add_service_account(self.secret["apiKey"], self.secret["apiSecret"])
        sandbox.add_organization(org)
        events_list = self.env.get("SMC_EVENTS_LIST", "segment_events")
        fields = [column.as_field() for column in EVENTS_LIST_COLUMNS]
        sandbox.add_list(org, events_list, fields, type="Datalist", name="Segment events")
        seed_users(sandbox, org)  # the user list, segment and journey the example settings name
        # The example customer of events/ already has a profile, as a marketer's customers do, so
        # its transactional message finds its recipient even before an identify came.
        sandbox.state.load(
            org,
            USERS_LIST,
            None,
            {"keyFields": "CUSTOMER_ID", "fields": "CUSTOMER_ID,MAIL"},
            [[EXAMPLE_CUSTOMER, "zoe.martin@example.com"]],
        )
        return str(sandbox.base_url)

    @property
    def _aws_endpoint(self) -> str:
        return f"http://{HOST}:{self.config.moto_port}"

    def _configure_function(self, smc_url: str) -> None:
        env = function_settings(
            self.env, smc_url, SECRET_ID, (TABLE, STATE_TABLE), loopback_smc=self.config.real_smc is None
        )
        self._function_env = env
        os.environ.update(env)
        from handler.settings import SettingsError, load_settings

        try:
            load_settings()
        except SettingsError as exc:
            raise StackError(f"the function's settings are not valid: {exc}") from None

    def _start_front(self) -> None:
        from devstack.front import FrontServer

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log = self.log_path.open("a", encoding="utf-8", buffering=1)
        artifact = self.config.artifact
        invoke = self._start_function(artifact, log) if artifact else self._in_process_function(log)
        self._front = FrontServer(HOST, self.config.front_port, invoke, self.out, log)
        threading.Thread(
            target=self._front.serve_forever, kwargs={"poll_interval": 0.05}, name="front", daemon=True
        ).start()

    def _in_process_function(self, log: TextIO) -> Invoke:
        """The source tree's handler, in this process; its JSON log lines go to `log`."""
        from handler.app import lambda_handler, reset_runtime
        from handler.observability import logger

        reset_runtime()
        handler = logger.registered_handler
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            self._log_handler = handler
            self._log_stream = handler.setStream(log)  # JSON lines, as CloudWatch gets them
        invoke: Invoke = lambda_handler  # Powertools' decorators leave it untyped
        return invoke

    def _start_function(self, artifact: Path, log: TextIO) -> Invoke:
        """The built artifact under awslambdaric; everything its process prints goes to `log`."""
        if not (artifact / "handler" / "app.py").is_file():
            raise StackError(f"{artifact} holds no built function: `make run ARTIFACT=1` builds it")
        settings = {**aws_env(self._aws_endpoint), **self._function_env}
        self._function = function = ArtifactFunction(
            artifact,
            settings,
            log,
            runtime_dir=self.config.runtime_dir or RUNTIME_DIR,
            config=FunctionConfig(region=REGION),
        )
        function.start()
        return function.call

    # -- describe ------------------------------------------------------------------------------
    @property
    def webhook_url(self) -> str:
        """Where Segment (or curl) posts."""
        return f"http://{HOST}:{self.config.front_port}{ROUTE}"

    def describe(self) -> dict[str, Any]:
        """What `stack.json` publishes: URLs, names and the example credentials' public half."""
        sandbox = self._sandbox.base_url if self._sandbox is not None else None
        return {
            "webhook_url": self.webhook_url,
            "sandbox_url": sandbox,
            "smc_admin_url": os.environ.get("SMC_ADMIN_URL"),
            "aws_endpoint": os.environ.get("AWS_ENDPOINT_URL"),
            "organization": self.env.get("SMC_ORGANIZATION", "demo"),
            "events_list": self.env.get("SMC_EVENTS_LIST", "segment_events"),
            "users_list": USERS_LIST,
            "segment": STATIC_SEGMENT,
            "audience_segment": AUDIENCE_SEGMENT,
            "journey": ORDER_JOURNEY,
            "log_file": str(self.log_path),
            "secret_id": SECRET_ID,
            "table": TABLE,
            "artifact": str(self.config.artifact) if self.config.artifact else None,
        }

    def banner(self) -> str:
        """Where everything is, printed once the stack is up."""
        info = self.describe()
        org, events = info["organization"], info["events_list"]
        lines = [
            "Local stack ready: AWS emulator + "
            + ("SMC sandbox" if info["sandbox_url"] else f"REAL SMC {info['smc_admin_url']}")
            + " + webhook, on loopback only.",
            "",
            f"  Webhook URL    {self.webhook_url}   (POST, as API Gateway's POST /segment)",
            f"  Shared secret  {self.secret['sharedSecret']}   (X-Signature: hex HMAC-SHA1 of the body)",
            f"  Bearer token   {self.secret['bearerToken']}   (Authorization: Bearer …; needed for batches)",
        ]
        if info["sandbox_url"]:
            admin = f"{info['sandbox_url']}/_sandbox/organizations/{org}/lists"
            lines += [
                f"  SMC sandbox    {info['sandbox_url']}   (organization {org}, "
                f"service account {self.secret['apiKey']}:{self.secret['apiSecret']})",
                f"    rows         {admin}/{events}/rows",
                f"    members      {admin}/{USERS_LIST}/segments/{STATIC_SEGMENT}/members",
                f"    SMC calls    {info['sandbox_url']}/_sandbox/requests",
            ]
        lines += [
            f"  AWS emulator   {info['aws_endpoint']}   (moto: secret {SECRET_ID}, tables {TABLE} and",
            f"                 {STATE_TABLE})",
            f"  Function       {self._function_description(info['artifact'])}",
            f"  Function log   {self.log_path}   (JSON lines and metrics, as CloudWatch gets them)",
            "",
            "  Try it:  make demo",
            f"           curl -i {self.webhook_url} -H 'Content-Type: application/json' "
            f"-H 'Authorization: Bearer {self.secret['bearerToken']}' "
            '-d \'{"type":"track","event":"Order Completed","userId":"u1","messageId":"m1"}\'',
            "  Stop:    Ctrl-C",
        ]
        return "\n".join(lines)

    @staticmethod
    def _function_description(artifact: str | None) -> str:
        if artifact is None:
            return "handler/ of the working tree, in-process (make run ARTIFACT=1: the built artifact)"
        return f"the built artifact {artifact}, under awslambdaric in its own python3.13 process"

    # -- run and stop --------------------------------------------------------------------------
    def catch_signals(self) -> None:
        """From now on SIGINT (Ctrl-C) and SIGTERM ask the stack to stop; call before `start`."""

        def _stop(signum: int, frame: FrameType | None) -> None:
            self._stopping.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)

    def wait(self) -> None:
        """Serve until a stop is asked for (see `catch_signals`)."""
        while not self._stopping.wait(0.2):
            pass

    def stop(self) -> None:
        """Stop whatever runs, in reverse order; safe to call twice."""
        front, self._front = self._front, None
        if front is not None:
            front.shutdown()
            front.server_close()
        function, self._function = self._function, None
        if function is not None:
            function.stop()
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.stop()
        moto, self._moto = self._moto, None
        if moto is not None:
            with contextlib.suppress(Exception):
                moto.stop()
        if self._log_handler is not None and self._log_stream is not None:
            self._log_handler.setStream(self._log_stream)
            self._log_handler = self._log_stream = None
        log, self._log = self._log, None
        if log is not None:
            log.close()
        self.lock.release()
