"""Turning raw timings into the headline numbers (always ratios against same-run baselines) and the
table `make bench` prints."""

from __future__ import annotations

import statistics
from typing import Any


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """The flat numbers results.json leads with; each is computed from this run's `raw`."""
    out: dict[str, Any] = {}
    throughput = raw.get("throughput", {})
    rows = {}
    for size, data in throughput.items():
        product, floor = _ms(data["product_s"]), _ms(data["floor_s"])
        naive = _ms(data["naive_s"]) if data["naive_s"] else None
        events = data["events"]
        rows[size] = {
            "events": events,
            "product_ms": product,
            "floor_ms": floor,
            "naive_ms": naive,
            "replay_ms": _ms(data["replay_s"]),
            "product_events_per_s": round(events / product * 1000),
            "floor_events_per_s": round(events / floor * 1000),
            "naive_events_per_s": round(events / naive * 1000) if naive else None,
            "throughput_ratio_vs_naive": _ratio(naive, product) if naive else None,
            "time_ratio_vs_floor": _ratio(product, floor),
        }
    if rows:
        out["throughput"] = rows
    if "1000" in rows:
        out["throughput_ratio_vs_naive_1000"] = rows["1000"]["throughput_ratio_vs_naive"]
        out["time_ratio_vs_floor_1000"] = rows["1000"]["time_ratio_vs_floor"]
        out["events_per_s_1000"] = rows["1000"]["product_events_per_s"]
    calls = raw.get("smc_calls")
    if calls:
        out["smc_calls_per_1000"] = round(calls["calls"] * 1000 / calls["events"], 2)
        out["smc_distinct_targets_1000"] = calls["distinct_targets"]
    latency = raw.get("latency")
    if latency:
        rtt_ms = latency["smc_latency_s"] * 1000
        out["latency"] = {
            "smc_latency_ms": rtt_ms,
            **{
                f"{size}_events": {
                    "product_ms": _ms(latency[size]["product_s"]),
                    "floor_ms": _ms(latency[size]["floor_s"]),
                    "smc_round_trips": round(
                        statistics.median(latency[size]["product_s"]) * 1000 / rtt_ms, 2
                    ),
                }
                for size in ("1", "1000")
                if size in latency
            },
        }
        if "1000" in latency:
            out["latency_1000_smc_round_trips"] = out["latency"]["1000_events"]["smc_round_trips"]
            if "1000" in rows:  # what the slow SMC added, in round trips: 1 = every target in parallel
                added_ms = out["latency"]["1000_events"]["product_ms"] - rows["1000"]["product_ms"]
                out["latency_1000_added_smc_round_trips"] = round(added_ms / rtt_ms, 2)
            naive = latency.get("naive_10")
            if naive:
                product_rate = 1000 / statistics.median(latency["1000"]["product_s"])
                naive_rate = naive["events"] / naive["naive_s"]
                out["latency"]["naive_events_per_s"] = round(naive_rate, 1)
                out["latency"]["product_events_per_s_1000"] = round(product_rate)
                out["throughput_ratio_vs_naive_1000_slow_smc"] = round(product_rate / naive_rate)
        stuck = latency.get("stuck")
        if stuck:
            out["stuck_answer_ms"] = round(stuck["answer_s"] * 1000, 1)
            out["stuck_deadline_ms"] = stuck["deadline_ms"]
            out["stuck_status"] = stuck["status"]
    queued = raw.get("queued")
    if queued:
        big = str(queued["events"])
        out["queued"] = {}
        for size, data in queued["queued"].items():
            out["queued"][size] = {
                "events": data["events"],
                "webhook_ms": _ms(data["webhook_s"]),
                "end_to_end_ms": _ms(data["end_to_end_s"]),
                "end_to_end_events_per_s": round(data["events"] / statistics.median(data["end_to_end_s"])),
                "consumer_invocations": statistics.median(data["consumer_invocations"]),
            }
        sync = queued["sync"][big]["end_to_end_s"]
        out["queued"]["sync_" + big] = {
            "events": queued["events"],
            "end_to_end_ms": _ms(sync),
            "end_to_end_events_per_s": round(queued["events"] / statistics.median(sync)),
        }
        for size in ("1", "1000"):
            if size in out["queued"]:
                out[f"queued_webhook_ms_{size}"] = out["queued"][size]["webhook_ms"]
        if "1000" in out["queued"]:
            out["queued_end_to_end_events_per_s_1000"] = out["queued"]["1000"]["end_to_end_events_per_s"]
        if big == "1000":
            out["sync_end_to_end_events_per_s_1000"] = out["queued"]["sync_1000"]["end_to_end_events_per_s"]
    ordered = raw.get("ordering")
    if ordered:
        medians = {name[:-2]: _ms(ordered[name]) for name in ordered if name.endswith("_s")}
        out["ordering"] = {"events": ordered["events"], "group_events": ordered["group_events"], **medians}
        on, off = medians["groups_on"], medians["groups_off"]
        out["ordering_added_ms_1000"] = round(on - off, 2)
        out["ordering_added_pct_1000"] = round((on - off) / on * 100, 1)
        plain_on, plain_off = medians["no_groups_on"], medians["no_groups_off"]
        out["ordering_added_pct_no_groups_1000"] = round((plain_on - plain_off) / plain_off * 100, 1)
    engage = raw.get("profiles")
    if engage:
        product, floor = _ms(engage["product_s"]), _ms(engage["floor_s"])
        calls = engage["smc_calls"]
        out["profiles"] = {"events": engage["events"], "product_ms": product, "floor_ms": floor}
        out["profiles_time_ratio_vs_floor_1000"] = _ratio(product, floor)
        out["profiles_smc_calls_per_1000"] = round(calls["calls"] * 1000 / calls["events"], 2)
        out["profiles_distinct_targets_1000"] = calls["distinct_targets"]
    cold = raw.get("coldstart")
    if cold:
        med = cold["median"]
        product, ref_request, ref_imports = med["product"], med["ref_request"], med["ref_imports"]
        out["cold_start_ms"] = product["total_ms"]
        out["cold_start_ratio"] = _ratio(product["total_ms"], ref_request["total_ms"])
        out["cold_start_ratio_vs_imports_only"] = _ratio(product["total_ms"], ref_imports["total_ms"])
        out["cold_start_import_ratio"] = _ratio(product["import_ms"], ref_imports["import_ms"])
        if "product_no_pyc" in med and "ref_request_no_pyc" in med:
            out["cold_start_ratio_no_pyc"] = _ratio(
                med["product_no_pyc"]["total_ms"], med["ref_request_no_pyc"]["total_ms"]
            )
            out["cold_start_no_pyc_over_pyc"] = _ratio(med["product_no_pyc"]["total_ms"], product["total_ms"])
        if "product_tracing" in med:
            out["cold_start_tracing_ms"] = med["product_tracing"]["total_ms"]
            out["cold_start_tracing_ratio"] = _ratio(
                med["product_tracing"]["total_ms"], ref_request["total_ms"]
            )
    mem = raw.get("memory")
    if mem:
        out["peak_rss_mb_over_idle_4000"] = mem["peak_over_idle_mb"]
    pkg = raw.get("package")
    if pkg and "package_mb" in pkg:
        out["package_mb"] = pkg["package_mb"]
        out["package_zipped_mb"] = pkg["zipped_mb"]
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _grid(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    parts: list[str] = []
    m = results["machine"]
    parts.append(f"machine: {m['cpu_count']} CPUs ({m['cpu_model'] or m['machine']}), Python {m['python']}")
    if "throughput" in results:
        rows = [
            [
                int(r["events"]),
                r["product_ms"],
                r["floor_ms"],
                r["naive_ms"],
                r["replay_ms"],
                r["product_events_per_s"],
                r["time_ratio_vs_floor"],
                r["throughput_ratio_vs_naive"],
            ]
            for r in results["throughput"].values()
        ]
        headers = [
            "events",
            "product ms",
            "floor ms",
            "naive ms",
            "replay ms",
            "product ev/s",
            "x floor",
            "x naive",
        ]
        parts.append("\nwarm throughput (median; sandbox answers instantly)\n" + _grid(headers, rows))
    if "latency" in results:
        lat = results["latency"]
        rows = [
            [size.split("_")[0], v["product_ms"], v["floor_ms"], v["smc_round_trips"]]
            for size, v in lat.items()
            if isinstance(v, dict)
        ]
        parts.append(
            f"\nSMC answering in {lat['smc_latency_ms']:.0f} ms\n"
            + _grid(["events", "product ms", "floor ms", "SMC round trips"], rows)
        )
    if "queued" in results:
        q = results["queued"]
        rows = [
            [
                "queued",
                int(v["events"]),
                v["webhook_ms"],
                v["end_to_end_ms"],
                v["end_to_end_events_per_s"],
                v["consumer_invocations"],
            ]
            for size, v in q.items()
            if not size.startswith("sync_")
        ]
        rows += [
            [
                "sync",
                int(v["events"]),
                v["end_to_end_ms"],
                v["end_to_end_ms"],
                v["end_to_end_events_per_s"],
                None,
            ]
            for size, v in q.items()
            if size.startswith("sync_")
        ]
        parts.append(
            "\nqueued vs sync delivery (median; end to end = webhook + consumer draining the queue to SMC)\n"
            + _grid(
                ["mode", "events", "webhook ms", "end to end ms", "end-to-end ev/s", "consumer runs"], rows
            )
        )
    if "ordering" in results:
        o = results["ordering"]
        with_groups, without = (
            results["ordering_added_pct_1000"],
            results["ordering_added_pct_no_groups_1000"],
        )
        rows = [
            ["100 group calls", o["groups_off"], o["groups_on"], with_groups],
            ["no group calls", o["no_groups_off"], o["no_groups_on"], without],
        ]
        parts.append(
            f"\norder safety, {o['events']:,} events (median)\n"
            + _grid(["request", "off ms", "on ms", "added % of request"], rows)
        )
    if "cold_start_ms" in results:
        med = results["raw"]["coldstart"]["median"]
        rows = [
            [label, v["import_ms"], v["request_ms"], v["total_ms"], v["process_wall_ms"]]
            for label, v in med.items()
        ]
        parts.append(
            "\ncold start (median, fresh process)\n"
            + _grid(["process", "import ms", "1st request ms", "total ms", "wall ms"], rows)
        )
    headline = [
        ("throughput_ratio_vs_naive_1000", "≥ 20"),
        ("time_ratio_vs_floor_1000", "≤ 2"),
        ("smc_calls_per_1000", "≤ distinct targets"),
        ("smc_distinct_targets_1000", ""),
        ("latency_1000_smc_round_trips", ""),
        ("latency_1000_added_smc_round_trips", "1 (targets in parallel)"),
        ("throughput_ratio_vs_naive_1000_slow_smc", "(SMC at 200 ms)"),
        ("stuck_answer_ms", f"< {results.get('stuck_deadline_ms', 4500)} (503)"),
        ("queued_webhook_ms_1", "(queued: answer)"),
        ("queued_webhook_ms_1000", "(queued: answer)"),
        ("queued_end_to_end_events_per_s_1000", "(queued: webhook + consumer)"),
        ("sync_end_to_end_events_per_s_1000", "(sync, same run)"),
        ("ordering_added_ms_1000", "(100 group calls)"),
        ("ordering_added_pct_1000", "< 25 % of the request"),
        ("ordering_added_pct_no_groups_1000", "< 5 % (noise: no group calls)"),
        ("profiles_time_ratio_vs_floor_1000", "(profiles + audiences on)"),
        ("profiles_smc_calls_per_1000", "≤ distinct targets"),
        ("profiles_distinct_targets_1000", ""),
        ("cold_start_ratio", "≤ 1.3"),
        ("cold_start_ratio_vs_imports_only", ""),
        ("cold_start_import_ratio", ""),
        ("cold_start_tracing_ratio", "(tracing on)"),
        ("cold_start_ratio_no_pyc", "(no .pyc)"),
        ("peak_rss_mb_over_idle_4000", "< 128"),
        ("package_mb", "(report)"),
        ("package_zipped_mb", ""),
    ]
    met = results.get("met", {})
    rows = [
        [name, results.get(name), target, {True: "yes", False: "NO", None: ""}[met.get(name)]]
        for name, target in headline
        if name in results
    ]
    parts.append("\nheadline\n" + _grid(["metric", "value", "target", "met"], rows))
    return "\n".join(parts)
