"""What every operator command shares: settings and secret flags, the SMC client, findings, exit codes.

Settings come from the same environment variables as the Lambda (`handler.settings.load_settings`),
optionally from a file of them (`--env-file`), with flags on top. The SMC service account comes
from the same Secrets Manager secret as the Lambda (`CredentialStore`), or from `--secret-file` or
`--api-key` (+ `--api-secret` / `SMC_API_SECRET`) when the operator has it at hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import requests

from handler.credentials import Credentials, parse_key_expiry
from handler.deadline import Deadline
from handler.settings import (
    IDEMPOTENCY_TABLE,
    SMC_ADMIN_URL,
    SMC_EVENTS_LIST,
    SMC_EXTRA_ALLOWED_HOSTS,
    SMC_ORGANIZATION,
    SMC_SECRET_ID,
    Settings,
    load_settings,
)
from handler.smc.client import CredentialSource, SmcClient

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PROBLEMS = 1  # the command ran and found (or left) problems
EXIT_USAGE = 2  # bad flags, settings or secret: nothing was attempted
EXIT_TEMPFAIL = 75  # something retryable failed: run the same command again
EXIT_INTERRUPTED = 130

API_SECRET_ENV = "SMC_API_SECRET"  # noqa: S105 - the name of a variable, not a secret
UNUSED = "unused-by-the-cli"  # fills Lambda-only settings the commands never read
DEFAULT_TIMEOUT_S = 30.0

Level = Literal["ok", "info", "warn", "FAIL"]


class CliError(Exception):
    """A problem that stops a command before it talks to SMC; `fix` tells the operator what to do."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """A service account given on the command line or in a file: there is nothing to refresh."""

    credentials: Credentials
    origin: str

    def get(self, deadline: Deadline | None = None) -> Credentials:
        """The credentials as given."""
        return self.credentials

    def refresh(self, deadline: Deadline | None = None) -> Credentials:
        """The same credentials: a 401 then means they are wrong."""
        return self.credentials


@dataclass(slots=True)
class Smc:
    """One command's view of SMC: the settings, the client, and a deadline per call."""

    settings: Settings
    client: SmcClient
    credentials: CredentialSource
    credentials_origin: str
    timeout_s: float = DEFAULT_TIMEOUT_S

    def deadline(self) -> Deadline:
        """A fresh deadline for one logical call (its retries included)."""
        return Deadline(self.timeout_s)

    def get(
        self, path: str, *, params: Mapping[str, str] | None = None, organization_scoped: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """GET `path` (below the organization unless told otherwise): status and JSON object body."""
        response = self.client.call(
            "GET", path, self.deadline(), params=params, organization_scoped=organization_scoped
        )
        return response.status_code, json_body(response)

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST a JSON object to `path` below the organization: status and JSON object body."""
        data = json.dumps(body, separators=(",", ":")).encode()
        response = self.client.call("POST", path, self.deadline(), body=data)
        return response.status_code, json_body(response)


def json_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def smc_errors(body: Mapping[str, Any]) -> str:
    """SMC's error codes and descriptions, short enough for one line."""
    parts = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            code, text = error.get("error_code") or "", error.get("description") or ""
            parts.append(f"{code}: {text}" if code and text else str(code or text))
    return "; ".join(parts[:3])[:300] or str(body.get("result_code") or "no details")


def refused_fix(smc: Smc) -> str:
    """What to do when SMC answers 401/403 to the service account."""
    if isinstance(smc.credentials, StaticCredentials):
        return f"use a valid, unexpired SMC service account key and secret ({smc.credentials_origin})"
    return (
        f"put a valid, unexpired SMC service account key and secret (apiKey, apiSecret) in the "
        f"{smc.credentials_origin} (docs/deploying.md, 'Rotating credentials')"
    )


class Findings:
    """One line per finding (`ok`, `info`, `warn` or `FAIL`), each problem with its fix; counts problems."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self.problems = 0

    def add(self, level: Level, message: str, fix: str = "") -> None:
        """Print one finding; a FAIL counts as a problem."""
        if level == "FAIL":
            self.problems += 1
        line = f"{level:<5} {message}"
        if fix:
            line += f"  -> fix: {fix}"
        print(line, file=self._out, flush=True)

    def ok(self, message: str) -> None:
        """A check that passed."""
        self.add("ok", message)

    def info(self, message: str) -> None:
        """Neither good nor bad: what the destination will do with what it found."""
        self.add("info", message)

    def warn(self, message: str, fix: str = "") -> None:
        """Worth knowing, but not a failure."""
        self.add("warn", message, fix)

    def fail(self, message: str, fix: str) -> None:
        """A problem, and how to fix it."""
        self.add("FAIL", message, fix)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The flags every command takes to find SMC and its service account."""
    group = parser.add_argument_group(
        "settings (default: the Lambda's environment variables)",
        "Flags override the environment; --env-file reads variables from a file first.",
    )
    group.add_argument(
        "--env-file",
        type=Path,
        help="JSON of the function's variables: {NAME: value}, sam's env.json, or the output of "
        "`aws lambda get-function-configuration`",
    )
    group.add_argument("--admin-url", help=f"SMC admin URL, e.g. https://acme.slgnt.eu ({SMC_ADMIN_URL})")
    group.add_argument("--organization", help=f"SMC organization ({SMC_ORGANIZATION})")
    group.add_argument("--events-list", help=f"API name of the events list ({SMC_EVENTS_LIST})")
    group.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help=f"accept a non-SMC host, e.g. a local sandbox ({SMC_EXTRA_ALLOWED_HOSTS}); repeatable",
    )
    secret = parser.add_argument_group("SMC service account (default: the Lambda's Secrets Manager secret)")
    secret.add_argument("--secret-id", help=f"Secrets Manager secret name or ARN ({SMC_SECRET_ID})")
    secret.add_argument("--region", help="AWS region of the secret (default: the AWS CLI's)")
    secret.add_argument("--profile", help="AWS profile to read the secret with")
    secret.add_argument("--secret-file", type=Path, help="JSON file with apiKey and apiSecret instead")
    secret.add_argument("--api-key", help="SMC service account key instead of the secret")
    secret.add_argument(
        "--api-secret",
        help=f"its secret (prefer the {API_SECRET_ENV} variable: flags show in the process list)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds allowed for each SMC call, retries included (default: %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the client's log lines on stderr")


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read --env-file {path}: {exc}", "pass a JSON file") from None
    if isinstance(data, dict) and isinstance(data.get("Environment"), dict):
        data = data["Environment"].get("Variables") or {}  # aws lambda get-function-configuration
    if isinstance(data, dict) and len(data) == 1:
        (only,) = data.values()
        if isinstance(only, dict):
            data = only  # sam's env.json: {"FunctionName": {...}}
    if not isinstance(data, dict):
        raise CliError(f"--env-file {path} is not a JSON object of variables", "pass {NAME: value}")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def _settings_env(args: argparse.Namespace, have_credentials: bool) -> dict[str, str]:
    env = dict(os.environ)
    if args.env_file is not None:
        env.update(_read_env_file(args.env_file))
    flags = {
        SMC_ADMIN_URL: args.admin_url,
        SMC_ORGANIZATION: args.organization,
        SMC_EVENTS_LIST: args.events_list,
        SMC_SECRET_ID: args.secret_id,
    }
    env.update({name: value for name, value in flags.items() if value})
    if args.allow_host:
        hosts = [h for h in env.get(SMC_EXTRA_ALLOWED_HOSTS, "").split(",") if h.strip()]
        env[SMC_EXTRA_ALLOWED_HOSTS] = ",".join(hosts + args.allow_host)
    env.setdefault(IDEMPOTENCY_TABLE, UNUSED)  # the commands never use the idempotency table
    if have_credentials:
        env.setdefault(SMC_SECRET_ID, UNUSED)
    return env


def _file_credentials(path: Path) -> StaticCredentials:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read --secret-file {path}: {exc}", "pass a JSON file") from None
    key = data.get("apiKey") if isinstance(data, dict) else None
    secret = data.get("apiSecret") if isinstance(data, dict) else None
    if not (isinstance(key, str) and key and isinstance(secret, str) and secret):
        raise CliError(
            f"--secret-file {path} has no apiKey and apiSecret",
            'write {"apiKey": "…", "apiSecret": "…"} (the shape of the Lambda\'s secret)',
        )
    expires_at, unreadable = parse_key_expiry(data)
    credentials = Credentials(key, secret, (), (), expires_at, unreadable)
    return StaticCredentials(credentials, f"--secret-file {path}")


def _credentials(args: argparse.Namespace) -> StaticCredentials | None:
    if args.secret_file is not None:
        return _file_credentials(args.secret_file)
    if args.api_key:
        secret = args.api_secret or os.environ.get(API_SECRET_ENV, "")
        if not secret:
            raise CliError("--api-key needs its secret", f"set {API_SECRET_ENV} or pass --api-secret")
        return StaticCredentials(Credentials(args.api_key, secret, (), ()), "--api-key")
    if args.api_secret:
        raise CliError("--api-secret needs --api-key", "pass both, or neither to use the Lambda's secret")
    return None


def connect(args: argparse.Namespace, *, need_credentials: bool = True) -> Smc:
    """Settings, credentials and client for a command, or `CliError`/`SettingsError`.

    Without `need_credentials` (a dry run that never calls SMC) no secret needs to be named.
    """
    from handler.credentials import CredentialStore

    static = _credentials(args)
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
    if args.profile:
        os.environ["AWS_PROFILE"] = args.profile
    settings = load_settings(_settings_env(args, static is not None or not need_credentials))
    source: CredentialSource
    if static is not None:
        source, origin = static, static.origin
    else:
        source = CredentialStore(settings.secret_id, settings.secret_max_age_seconds)
        origin = f"Secrets Manager secret {settings.secret_id}"
    if args.timeout <= 0:
        raise CliError("--timeout must be positive", "pass e.g. --timeout 30")
    client = SmcClient(settings.smc_base_url, settings.organization, source)
    return Smc(settings, client, source, origin, args.timeout)


@contextlib.contextmanager
def client_logs(verbose: bool) -> Iterator[None]:
    """Send the shared Powertools logger to stderr (errors only unless `verbose`), then restore it.

    stdout stays for the command's own output; the Lambda's logger is left as it was afterwards.
    """
    from handler.observability import logger

    handler = logger.registered_handler
    level = logger.log_level
    stream: TextIO | None = None
    if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
        stream = handler.setStream(sys.stderr)
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if stream is not None and isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
