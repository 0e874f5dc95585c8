"""`smc-destination`: operator commands for a deployed Segment → SMC destination.

    smc-destination check       prove the settings, secret, SMC organization and lists are right
    smc-destination provision   create the events list and its columns (idempotent, --dry-run)
    smc-destination replay      send events from a JSON/NDJSON file, resumably
    smc-destination redrive     move queued-mode dead letters back to the delivery queue
    smc-destination status      outcomes, SMC answers and rejection reasons of the last hours

Every command but status reads the same settings (environment variables), secret and SMC client
as the Lambda; status reads the stack's metrics and logs. `smc-destination COMMAND --help` lists
its flags.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from handler import __version__

# Before the shared observability module is imported: X-Ray has no daemon here.
_CLI_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "segment-smc-destination"}


def build_parser() -> argparse.ArgumentParser:
    """The `smc-destination` parser with its commands."""
    from handler.cli import check, provision, redrive, replay, status

    parser = argparse.ArgumentParser(
        prog="smc-destination",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check.add_parser(commands)
    provision.add_parser(commands)
    replay.add_parser(commands)
    redrive.add_parser(commands)
    status.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code says how it went (see each command's --help)."""
    for name, value in _CLI_ENV.items():
        os.environ.setdefault(name, value)
    from handler.cli.common import EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_USAGE, CliError, client_logs
    from handler.errors import ConfigurationError, DependencyUnavailableError
    from handler.settings import SettingsError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with client_logs(args.verbose):
            code: int = args.run(args)
            return code
    except SettingsError as exc:
        fix = "set the Lambda's variable, or pass its flag (--admin-url, --organization, --secret-id …)"
        if "SMC_SECRET_ID" in str(exc):
            fix = "pass --secret-id, --secret-file or --api-key (with SMC_API_SECRET)"
        _error(f"settings: {exc}", fix)
    except CliError as exc:
        _error(exc.message, exc.fix)
    except ConfigurationError as exc:
        _error(f"the secret cannot be used: {exc}", "check SMC_SECRET_ID, AWS credentials and region")
    except DependencyUnavailableError as exc:
        _error(str(exc), "check AWS credentials, region and network, then retry")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `smc-destination … | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROBLEMS
    return EXIT_USAGE


def _error(message: str, fix: str) -> None:
    print(f"error: {message}" + (f"\n  fix: {fix}" if fix else ""), file=sys.stderr)


__all__ = ["build_parser", "main"]
