"""Keeps the benchmark code paths (bench/) from rotting: every measurement runs once, tiny.

No timing is asserted here: `make bench` measures, this only checks that it still can.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import coldstart, memory, package
from bench import env as benv
from bench.report import summarize, table
from bench.run import _targets_met, machine


@pytest.fixture(scope="module")
def bench_stack():
    with benv.servers() as stack:
        yield stack


def _worker(stack: benv.Stack, tmp_path: Path, *args: str, deadline_ms: str = "4500") -> dict:
    out = tmp_path / f"{args[0]}.json"
    subprocess.run(
        [sys.executable, "-m", "bench.worker", args[0], str(out), *args[1:]],
        env=stack.env(BENCH_STACK=stack.to_json(), RESPONSE_DEADLINE_MS=deadline_ms),
        cwd=benv.OUT,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )
    return json.loads(out.read_text())


def test_every_measurement_runs_and_reports(bench_stack, tmp_path):
    raw: dict = {}
    raw.update(_worker(bench_stack, tmp_path, "throughput", "--sizes", "1,5", "--scale", "0.02"))
    # A short deadline, so that SMC stuck for 1 s outlasts it (the other workers keep the default:
    # a cold process's first secret read would not fit in 800 ms on a busy machine)
    stuck = ("--scale", "0.01", "--slow", "0.01", "--stuck", "1.0")
    raw.update(_worker(bench_stack, tmp_path, "latency", *stuck, deadline_ms="800"))
    raw.update(_worker(bench_stack, tmp_path, "queued", "--sizes", "1,5", "--scale", "0.01"))
    raw.update(_worker(bench_stack, tmp_path, "ordering", "--sizes", "20", "--scale", "0.01"))
    raw.update(_worker(bench_stack, tmp_path, "profiles", "--sizes", "40", "--scale", "0.01"))
    work = tmp_path / "cold"
    work.mkdir()
    raw["coldstart"] = {
        "median": {name: coldstart.run_probe(bench_stack, name, work) for name in coldstart.PROBES}
    }
    raw["memory"] = memory.measure(bench_stack, 20)
    artifact = tmp_path / "artifact"
    (artifact / "handler").mkdir(parents=True)
    (artifact / "handler" / "app.py").write_text("x = 1\n")
    raw["package"] = package.measure_dir(artifact)

    assert raw["throughput"]["5"]["product_s"] and raw["throughput"]["5"]["naive_s"]
    assert raw["smc_calls"]["calls"] >= 1 and raw["smc_calls"]["rows"] == 5
    assert raw["latency"]["stuck"]["status"] == 503
    assert raw["queued"]["queued"]["5"]["webhook_s"] and raw["queued"]["sync"]["5"]["end_to_end_s"]
    assert raw["memory"]["status"] == 200 and raw["memory"]["delivered"] == 20
    assert raw["ordering"]["group_events"] == 2 and raw["ordering"]["groups_on_s"]
    summary = summarize(raw)
    results = {"machine": machine(), **summary, "raw": raw}
    results["met"] = _targets_met(results)
    text = table(results)
    assert "warm throughput" in text and "cold start" in text and "queued vs sync" in text
    assert "order safety" in text and "ordering_added_pct_1000" in summary
    assert summary["profiles_smc_calls_per_1000"] * 40 / 1000 == summary["profiles_distinct_targets_1000"]
    assert summary["queued_webhook_ms_1"] > 0 and summary["queued"]["5"]["end_to_end_events_per_s"] > 0
    assert summary["cold_start_ratio"] > 0 and summary["peak_rss_mb_over_idle_4000"] >= 0
