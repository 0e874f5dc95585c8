"""`make bench`: every measurement of docs/performance.md in one run, with its baselines.

    python -m bench.run [--quick] [--out bench/results.json] [--only throughput,latency,...]

Starts the SMC sandbox and moto as subprocesses, runs each measurement in a fresh process, prints
a table and writes the results (ratios, the raw timings behind them, the machine) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import coldstart, memory, package
from bench import env as benv
from bench.report import summarize, table

SECTIONS = ("package", "throughput", "latency", "queued", "ordering", "profiles", "coldstart", "memory")
TARGETS = {
    "throughput_ratio_vs_naive_1000": (">=", 20.0),
    "time_ratio_vs_floor_1000": ("<=", 2.0),
    "smc_calls_per_1000": ("<=", "smc_distinct_targets_1000"),
    "cold_start_ratio": ("<=", 1.3),
    "peak_rss_mb_over_idle_4000": ("<", 128.0),
    "stuck_answer_ms": ("<", "stuck_deadline_ms"),
    "ordering_added_pct_1000": ("<", 25.0),
    "profiles_smc_calls_per_1000": ("<=", "profiles_distinct_targets_1000"),
    # No group calls: the same code path, so only the run's noise (a few %) may show.
    "ordering_added_pct_no_groups_1000": ("<", 5.0),
}


# Measured in a fresh worker process each, against the shared servers.
WORKER_SECTIONS = (
    ("throughput", "throughput and SMC calls"),
    ("latency", "latency with a slow SMC"),
    ("queued", "queued delivery vs sync"),
    ("ordering", "order safety on and off"),
    ("profiles", "profiles and audiences on"),
)


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 0
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": available,
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def _worker(stack: benv.Stack, what: str, extra: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", dir=benv.OUT, delete=False) as handle:
        out = Path(handle.name)
    try:
        subprocess.run(
            [sys.executable, "-m", "bench.worker", what, str(out), *extra],
            env=stack.env(BENCH_STACK=stack.to_json()),
            cwd=benv.OUT,  # not the repository: `handler` must come from PYTHONPATH
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=900,
        )
        result: dict[str, Any] = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    return result


def collect(sections: tuple[str, ...], quick: bool, log: Any = sys.stderr) -> dict[str, Any]:
    """Run the chosen measurements; returns the raw results keyed by section."""
    benv.OUT.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {}
    scale = 0.25 if quick else 1.0
    if "package" in sections:
        print("package size …", file=log, flush=True)
        raw["package"] = package.measure()
    with benv.servers() as stack:
        for section, label in WORKER_SECTIONS:
            if section in sections:
                print(f"{label} …", file=log, flush=True)
                raw.update(_worker(stack, section, ["--scale", str(scale)]))
                benv.reset_sandbox(stack)
        if "coldstart" in sections:
            print("cold starts …", file=log, flush=True)
            raw["coldstart"] = coldstart.measure(
                stack, runs=3 if quick else 11, variant_runs=1 if quick else 5
            )
        if "memory" in sections:
            print("memory …", file=log, flush=True)
            raw["memory"] = memory.measure(stack, 4000)
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=benv.ROOT / "bench" / "results.json")
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples (a smoke run, not for the record)"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument(
        "--handler-root",
        type=Path,
        help="measure the handler package found in this folder instead (e.g. a worktree of an older commit)",
    )
    args = parser.parse_args(argv)
    if args.handler_root is not None:
        if not (args.handler_root / "handler" / "app.py").exists():
            parser.error(f"{args.handler_root}/handler/app.py does not exist")
        os.environ["BENCH_HANDLER_ROOT"] = str(args.handler_root.resolve())
    sections = tuple(s for s in args.only.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    started = time.monotonic()
    raw = collect(sections, args.quick)
    summary = summarize(raw)
    results = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "handler_root": str(args.handler_root or benv.ROOT),
        "sections": list(sections),
        "machine": machine(),
        "bench_seconds": round(time.monotonic() - started, 1),
        **summary,
        "targets": {name: {"op": op, "target": target} for name, (op, target) in TARGETS.items()},
        "raw": raw,
    }
    results["met"] = {name: met for name, met in _targets_met(results).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out} in {results['bench_seconds']} s")
    return 0


def _targets_met(results: dict[str, Any]) -> dict[str, bool | None]:
    met: dict[str, bool | None] = {}
    for name, (op, target) in TARGETS.items():
        value = results.get(name)
        bound = results.get(target) if isinstance(target, str) else target
        if value is None or bound is None:
            met[name] = None
            continue
        met[name] = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
    return met


def median(values: list[float]) -> float:
    return statistics.median(values)


if __name__ == "__main__":
    raise SystemExit(main())
