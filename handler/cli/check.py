"""`smc-destination check`: prove the whole path to SMC works with the deployed settings and secret.

One line per finding (`ok`, `info`, `warn`, `FAIL … -> fix: …`); the exit code is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import time

from handler.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    CliError,
    Findings,
    Smc,
    add_connection_options,
    connect,
    refused_fix,
)
from handler.cli.lists import compare_columns, get_fields, get_list, get_segments, organization_found
from handler.cli.profiles_check import check_profiles
from handler.credentials import Credentials
from handler.errors import ConfigurationError, DependencyUnavailableError, SmcAuthError, SmcError
from handler.key_expiry import WARN_DAYS, days_left
from handler.names import is_api_name
from handler.schema import EVENTS_LIST_COLUMNS
from handler.settings import SettingsError

EXAMPLES = """examples:
  smc-destination check                                  # the Lambda's variables from the environment
  smc-destination check --env-file fn.json --segment users/vip:CUSTOMER_ID
  aws lambda get-function-configuration --function-name NAME > fn.json  # the deployed variables
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `check`."""
    parser = commands.add_parser(
        "check",
        help="prove the deployed settings and secret reach SMC and its lists are ready",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--segment",
        action="append",
        default=[],
        metavar="LIST/SEGMENT[:MATCHKEY]",
        help="also check a user list, its static segment and (optionally) the match key field that "
        "Segment group calls use (traits.userlist/groupId:traits.matchkey); repeatable",
    )
    add_connection_options(parser)
    parser.set_defaults(run=run)


def _parse_segment(spec: str) -> tuple[str, str | None, str | None]:
    head, _, matchkey = spec.partition(":")
    list_name, _, segment = head.partition("/")
    for part in (list_name, segment or "x", matchkey or "x"):
        if not is_api_name(part):
            raise CliError(f"--segment {spec!r} is not LIST/SEGMENT[:MATCHKEY]", "e.g. --segment users/vip")
    return list_name, segment or None, matchkey or None


def _check_key_expiry(credentials: Credentials, findings: Findings, source: str) -> None:
    rotate = "create a new key in SMC and put it in the secret (docs/deploying.md, 'Rotating credentials')"
    expires_at = credentials.api_key_expires_at
    if credentials.api_key_expiry_unreadable:
        findings.fail(
            "the secret's apiKeyExpiresAt is not an ISO 8601 date: nothing warns before the key expires"
            " (delivery goes on)",
            'write the key\'s expiration date from SMC as text, e.g. "apiKeyExpiresAt": "2027-03-31"',
        )
        return
    if expires_at is None:
        if source == "--api-key":
            return  # a key given on the command line has no secret to hold its date
        findings.warn(
            "the secret has no apiKeyExpiresAt: nothing warns before the SMC key expires",
            'add the key\'s expiration date from SMC, e.g. "apiKeyExpiresAt": "2027-03-31"',
        )
        return
    when = expires_at.strftime("%Y-%m-%d %H:%M UTC").removesuffix(" 00:00 UTC")
    left = days_left(expires_at)
    if left <= 0:
        findings.fail(f"SMC service account key expired on {when}", rotate)
    elif left <= WARN_DAYS:
        findings.warn(f"SMC service account key expires on {when}: {left:.0f} day(s) left", rotate)
    else:
        findings.ok(f"SMC service account key expires on {when} ({left:.0f} days left)")


def _check_reachable(smc: Smc, findings: Findings) -> None:
    started = time.monotonic()
    status, _ = smc.get("/status", organization_scoped=False)
    elapsed = (time.monotonic() - started) * 1000
    url = smc.client.url("/status", organization_scoped=False)
    if status == 200:
        findings.ok(f"SMC reachable: GET {url} answered 200 in {elapsed:.0f} ms")
    else:
        findings.warn(f"GET {url} answered {status} (expected 200)", "check SMC_ADMIN_URL")


def _check_events_list(smc: Smc, findings: Findings) -> None:
    name = smc.settings.events_list
    details = get_list(smc, name)
    if details is None:
        findings.fail(
            f"events list '{name}' does not exist",
            "run `smc-destination provision` to create it with every column, "
            "or set SMC_EVENTS_LIST to the list's api name",
        )
        return
    kind = details.get("type")
    if kind not in (None, "Datalist"):
        findings.warn(f"events list '{name}' is a {kind}; a Datalist is expected")
    report = compare_columns(name, EVENTS_LIST_COLUMNS, get_fields(smc, name))
    for column in report.missing:
        findings.fail(
            f"column {name}.{column.name} is missing",
            "run `smc-destination provision` (adds missing columns)",
        )
    for finding, fix in report.problems:
        findings.fail(finding, fix)
    if not report.missing and not report.problems:
        findings.ok(
            f"events list '{name}' has all {len(EVENTS_LIST_COLUMNS)} columns, of compatible types/lengths"
        )


def _check_segment(smc: Smc, findings: Findings, spec: str) -> None:
    list_name, segment, matchkey = _parse_segment(spec)
    details = get_list(smc, list_name)
    if details is None:
        findings.fail(
            f"user list '{list_name}' does not exist",
            "create it in SMC, or correct traits.userlist in Segment's group calls",
        )
        return
    if details.get("type") not in (None, "Userlist"):
        findings.warn(f"list '{list_name}' is a {details.get('type')}; group calls usually target a Userlist")
    if segment is not None:
        # SMC api names are case-insensitive: 'VIP' and 'vip' are one segment.
        found = {str(s.get("api_name")).lower(): s for s in get_segments(smc, list_name)}
        match = found.get(segment.lower())
        if match is None:
            findings.fail(
                f"static segment '{list_name}/{segment}' does not exist",
                f"create a static segment with api name '{segment}' on list '{list_name}' in SMC "
                "(Segment's groupId must equal it)",
            )
        elif match.get("segment_type") != "Static":
            findings.fail(
                f"segment '{list_name}/{segment}' is {match.get('segment_type')}, not Static",
                "group calls add and remove members: use a Static segment",
            )
        else:
            findings.ok(f"static segment '{list_name}/{segment}' exists")
    if matchkey is not None:
        names = {str(f.get("name", "")).upper() for f in get_fields(smc, list_name)}
        if matchkey.upper() in names:
            findings.ok(f"match key field {list_name}.{matchkey} exists")
        else:
            findings.fail(
                f"list '{list_name}' has no field {matchkey}",
                "correct traits.matchkey in Segment's group calls, or add the field in SMC",
            )


def run(args: argparse.Namespace, findings: Findings | None = None) -> int:
    """Check settings, secret, SMC, the events list, the profile settings and the given segments;
    1 on any problem."""
    findings = findings or Findings()
    for spec in args.segment:
        _parse_segment(spec)  # bad syntax stops before any call
    try:
        smc = connect(args)
    except SettingsError as exc:
        findings.fail(f"settings: {exc}", "set the Lambda's variable, or pass its flag (see --help)")
        return EXIT_PROBLEMS
    settings = smc.settings
    findings.ok(
        f"settings: SMC {settings.smc_base_url}, organization {settings.organization}, "
        f"events list {settings.events_list}"
    )
    try:
        try:
            credentials = smc.credentials.get()
        except (ConfigurationError, DependencyUnavailableError) as exc:
            findings.fail(
                f"SMC service account cannot be read: {exc}",
                "check SMC_SECRET_ID, the AWS credentials/region/profile used, "
                "and that the secret holds apiKey and apiSecret",
            )
            return EXIT_PROBLEMS
        findings.ok(f"SMC service account read from {smc.credentials_origin}")
        _check_key_expiry(credentials, findings, smc.credentials_origin)
        _check_reachable(smc, findings)
        organization = organization_found(smc)
        findings.ok(f"credentials accepted and organization '{settings.organization}' found")
        _check_events_list(smc, findings)
        if settings.profiles is not None:
            check_profiles(smc, settings.profiles, findings, organization)
        for spec in args.segment:
            _check_segment(smc, findings, spec)
    except SmcAuthError as exc:
        findings.fail(f"SMC refused the service account ({exc.status})", refused_fix(smc))
    except SmcError as exc:
        findings.fail(
            f"SMC not usable at {settings.smc_base_url}: {exc}",
            "check SMC_ADMIN_URL (https://<tenant>.slgnt.us or .slgnt.eu) and outbound network access",
        )
    except CliError as exc:
        findings.fail(exc.message, exc.fix or "see SMC's answer above")
    if findings.problems:
        print(f"{findings.problems} problem(s) found.")
        return EXIT_PROBLEMS
    print("All checks passed: the destination can deliver to SMC.")
    return EXIT_OK
