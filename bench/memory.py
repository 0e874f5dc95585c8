"""Peak memory while handling one 4,000-event (~4 MB) body, in a fresh process.

`python -m bench.memory OUT.json EVENTS` (run by `bench.run` with the stack's environment):
warm up with a small request, take the idle RSS, reset the kernel's high-water mark
(/proc/self/clear_refs), then load the API Gateway event from a file (as the Lambda runtime hands
it over: a parsed dict holding the body string) and handle it. Peak = VmHWM afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import env as benv
from bench.workload import request
from tests.support import FakeContext as Context


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return _status_kb("VmHWM") <= _status_kb("VmRSS") + 1024


def probe(event_file: Path, out: Path) -> None:
    from handler.app import lambda_handler

    for size in (10, 100):
        lambda_handler(request(size), Context())
    gc.collect()
    idle_kb = _status_kb("VmRSS")
    reset = _reset_peak()
    maxrss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    body_bytes = event_file.stat().st_size
    with event_file.open() as handle:
        api_event = json.load(handle)
    response = lambda_handler(api_event, Context())
    answer = json.loads(response["body"])
    peak_kb = _status_kb("VmHWM")
    result = {
        "events": answer.get("received"),
        "status": response["statusCode"],
        "delivered": answer.get("delivered"),
        "body_mb": round(len(api_event["body"].encode()) / 1e6, 2),
        "event_file_mb": round(body_bytes / 1e6, 2),
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_over_idle_mb": round((peak_kb - idle_kb) / 1024, 1),
        "peak_reset": reset,
        "ru_maxrss_before_mb": round(maxrss_before_kb / 1024, 1),
        "ru_maxrss_after_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out.write_text(json.dumps(result))


def measure(stack: benv.Stack, events: int = 4000) -> dict[str, Any]:
    """Write the request to a file here, then probe it in a fresh process."""
    import subprocess

    benv.OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="memory-", dir=benv.OUT) as tmp:
        event_file, out = Path(tmp) / "event.json", Path(tmp) / "result.json"
        event_file.write_text(json.dumps(request(events)))
        subprocess.run(
            [sys.executable, "-m", "bench.memory", str(out), str(event_file)],
            env=stack.env(),
            cwd=benv.OUT,  # not the repository: `handler` must come from PYTHONPATH
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=300,
        )
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("out", type=Path)
    parser.add_argument("event_file", type=Path)
    args = parser.parse_args(argv)
    probe(args.event_file, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
