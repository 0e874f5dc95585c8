"""Run the SMC sandbox standalone: `python -m sandbox --port 8899 --seed default`."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from .server import SmcSandbox
from .state import seed_default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument(
        "--seed",
        choices=("default", "none"),
        default="none",
        help="'default': org demo, account demo-key:demo-secret, segment_events, users, vip, "
        "order_confirmation",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every SMC request")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    sandbox = SmcSandbox(args.host, args.port, verbose=args.verbose)
    if args.seed == "default":
        seed_default(sandbox)
    sandbox.latency_s = args.latency
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with sandbox:
        print(
            f"SMC sandbox: SMC_ADMIN_URL={sandbox.base_url}  API {sandbox.api_url}  "
            f"admin {sandbox.base_url}/_sandbox/",
            flush=True,
        )
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
