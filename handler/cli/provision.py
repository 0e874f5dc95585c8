"""`smc-destination provision`: create the events list and its columns in SMC, or add missing columns.

Idempotent: a second run finds nothing to do and changes nothing. Existing columns are never
changed (SMC holds data in them); an incompatible one is reported with its fix. `--dry-run` reads
SMC and prints the exact calls it would make (method, URL, JSON body) without making them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from handler.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    CliError,
    Findings,
    Smc,
    add_connection_options,
    connect,
    refused_fix,
    smc_errors,
)
from handler.cli.lists import compare_columns, get_fields, get_list, list_path, organization_found
from handler.errors import SmcAuthError, SmcError
from handler.schema import EVENTS_LIST_COLUMNS, Column

EXAMPLES = """examples:
  smc-destination provision --dry-run     # show the calls, change nothing
  smc-destination provision               # create segment_events (or SMC_EVENTS_LIST) as needed
  smc-destination provision --env-file fn.json --events-list segment_events_eu
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `provision`."""
    parser = commands.add_parser(
        "provision",
        help="create the events list and its columns in SMC (idempotent)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="print the calls; change nothing")
    parser.add_argument(
        "--display-name", default="Segment events", help="the list's name in SMC (default: %(default)s)"
    )
    add_connection_options(parser)
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Call:
    """One planned SMC call."""

    method: str
    path: str  # below the organization
    body: dict[str, Any]
    summary: str


def fields_body(columns: list[Column]) -> dict[str, Any]:
    """The `POST /lists/{list}/fields` body for `columns`."""
    return {
        "fields": [
            {**column.as_field(), "description": f"Segment destination column {column.name}"}
            for column in columns
        ]
    }


def plan(smc: Smc, display_name: str, findings: Findings) -> list[Call]:
    """Read SMC and return the calls that bring the events list up to the schema."""
    name = smc.settings.events_list
    organization_found(smc)
    path = list_path(name)
    if get_list(smc, name) is None:
        findings.ok(f"events list '{name}' does not exist yet: it will be created")
        create = {
            "api_name": name,
            "name": display_name,
            "type": "Datalist",
            "description": "Segment events delivered by segment-smc-destination (one row per event)",
        }
        columns = list(EVENTS_LIST_COLUMNS)
        return [
            Call("POST", "/lists", create, f"create list '{name}'"),
            Call("POST", path + "/fields", fields_body(columns), f"add {len(columns)} columns"),
        ]
    report = compare_columns(name, EVENTS_LIST_COLUMNS, get_fields(smc, name))
    for finding, fix in report.problems:
        findings.fail(finding, fix)
    if not report.missing:
        return []
    names = ", ".join(column.name for column in report.missing)
    findings.ok(f"events list '{name}' exists; missing columns will be added: {names}")
    return [Call("POST", path + "/fields", fields_body(report.missing), f"add columns {names}")]


def _show(smc: Smc, call: Call) -> None:
    print(f"{call.method} {smc.client.url(call.path)}")
    print(json.dumps(call.body, indent=2))


def _apply(smc: Smc, calls: list[Call], findings: Findings) -> None:
    """Make the calls in order; stop at the first one SMC refuses."""
    for call in calls:
        status, body = smc.post(call.path, call.body)
        if status not in (200, 201, 202):
            findings.fail(
                f"SMC refused to {call.summary} ({status}: {smc_errors(body)})",
                "check that the service account may manage lists in this organization",
            )
            return
        findings.ok(f"{call.summary}: done ({status})")


def run(args: argparse.Namespace, findings: Findings | None = None) -> int:
    """Create or complete the events list; with `--dry-run` only print what would be called."""
    findings = findings or Findings()
    smc = connect(args)
    name = smc.settings.events_list
    try:
        calls = plan(smc, args.display_name, findings)
        if args.dry_run:
            print(f"dry run: {len(calls)} call(s) would be made; nothing was changed.")
            for call in calls:
                _show(smc, call)
        elif not calls and not findings.problems:
            findings.ok(f"events list '{name}' already has every column: nothing to do")
        else:
            _apply(smc, calls, findings)
    except SmcAuthError as exc:
        findings.fail(f"SMC refused the service account ({exc.status})", refused_fix(smc))
    except (SmcError, CliError) as exc:
        fix = exc.fix if isinstance(exc, CliError) else "check SMC_ADMIN_URL and retry"
        findings.fail(str(exc), fix or "see SMC's answer above")
    return EXIT_PROBLEMS if findings.problems else EXIT_OK
