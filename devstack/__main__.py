"""`python -m devstack [run]` starts the local stack; `python -m devstack demo` exercises it.

Ports and the state folder come from flags or LOCAL_* variables. Point the stack at a real SMC
tenant instead of the sandbox with LOCAL_SMC_ADMIN_URL (or --smc-admin-url), LOCAL_SMC_ORGANIZATION,
LOCAL_SMC_API_KEY and LOCAL_SMC_API_SECRET (variables only: flags would show the secret in `ps`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack import DEFAULT_FRONT_PORT, DEFAULT_MOTO_PORT, DEFAULT_SANDBOX_PORT, DEFAULT_STATE_DIR


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a port number, got {raw!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("LOCAL_STACK_DIR", DEFAULT_STATE_DIR)),
        help="lock, stack.json and the function log (default: LOCAL_STACK_DIR or %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", parents=[state], help="start the local stack (the default)")
    run.add_argument("--front-port", type=int, default=_env_int("LOCAL_FRONT_PORT", DEFAULT_FRONT_PORT))
    run.add_argument("--sandbox-port", type=int, default=_env_int("LOCAL_SMC_PORT", DEFAULT_SANDBOX_PORT))
    run.add_argument("--moto-port", type=int, default=_env_int("LOCAL_AWS_PORT", DEFAULT_MOTO_PORT))
    run.add_argument("--log-file", type=Path, help="the function's log (default: STATE_DIR/function.log)")
    run.add_argument(
        "--smc-admin-url",
        default=os.environ.get("LOCAL_SMC_ADMIN_URL", ""),
        help="a real SMC tenant instead of the sandbox (LOCAL_SMC_ADMIN_URL)",
    )
    run.add_argument(
        "--organization",
        default=os.environ.get("LOCAL_SMC_ORGANIZATION", ""),
        help="its organization (LOCAL_SMC_ORGANIZATION)",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one of the function's settings, e.g. --env SMC_ALLOWED_EVENTS='*'; repeatable",
    )
    run.add_argument(
        "--artifact",
        type=Path,
        help="serve this built artifact under awslambdaric instead of the working tree (make run ARTIFACT=1)",
    )
    run.add_argument(
        "--runtime-dir", type=Path, help="the Lambda runtime's packages for --artifact (make lambda-runtime)"
    )
    demo = commands.add_parser("demo", parents=[state], help="send the events/ cases to the running stack")
    demo.add_argument("--events-dir", type=Path, help="where cases.json and the event files are")
    return parser


def _run(args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack, RealSmc, StackConfig
    from devstack.state import StackError

    real = None
    if args.smc_admin_url:
        key = os.environ.get("LOCAL_SMC_API_KEY", "")
        secret = os.environ.get("LOCAL_SMC_API_SECRET", "")
        if not (key and secret and args.organization):
            print(
                "A real SMC tenant needs LOCAL_SMC_ORGANIZATION, LOCAL_SMC_API_KEY and LOCAL_SMC_API_SECRET.",
                file=sys.stderr,
            )
            return 2
        real = RealSmc(args.smc_admin_url, args.organization, key, secret)
    overrides = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"--env takes NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[name] = value
    config = StackConfig(
        front_port=args.front_port,
        sandbox_port=args.sandbox_port,
        moto_port=args.moto_port,
        state_dir=args.state_dir,
        log_file=args.log_file,
        real_smc=real,
        env_overrides=overrides,
        artifact=args.artifact,
        runtime_dir=args.runtime_dir,
    )
    stack = LocalStack(config)
    stack.catch_signals()
    print("Starting the local stack…", flush=True)
    try:
        stack.start()
    except StackError as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        print(stack.banner(), flush=True)
        stack.wait()
        print("\nStopping…", flush=True)
    finally:
        stack.stop()
    print("Local stack stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `run` (default) or `demo`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "run")
    args = _parser().parse_args(arguments)
    if args.command == "demo":
        from devstack.demo import run_demo
        from devstack.examples import EVENTS_DIR

        return run_demo(args.state_dir, args.events_dir or EVENTS_DIR)
    return _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
