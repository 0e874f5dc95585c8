"""Write docs/reliability.md from the figures of real runs: `python -m load.report` (`make reliability`).

Inputs: tests/.reliability.json (written by the fault and fuzz suites during `make test`) and
load/results.json (written by `make load`). Nothing in the tables is typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "tests" / ".reliability.json"
LOAD = ROOT / "load" / "results.json"
DOC = ROOT / "docs" / "reliability.md"

BEHAVIOUR = Path(__file__).with_name("behaviour.md")  # the prose part, kept by hand


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _statuses(statuses: dict[str, int]) -> str:
    order = ["200", "429", "503", "lost", "timeout", "crashed"]
    keys = sorted(statuses, key=lambda k: (order.index(k) if k in order else 99, k))
    return ", ".join(f"{k} x{statuses[k]}" for k in keys)


def render(suites: dict[str, Any], load: dict[str, Any] | None) -> str:
    faults: list[dict[str, Any]] = list((suites.get("faults") or {}).values())
    per_property: dict[str, int] = suites.get("fuzz") or {}
    fuzz = {
        "inputs": sum(n for name, n in per_property.items() if not name.startswith("hostile names: ")),
        "per_property": per_property,
    }
    total = {
        key: sum(int(case[key]) for case in faults)
        for key in (
            "requests",
            "events",
            "lost",
            "duplicate_rows",
            "resent_rows",
            "sent_after_ack",
            "smc_calls",
        )
    }
    lines = [
        "# Reliability",
        "",
        "Every figure below comes from a real run: the fault and fuzz suites (`make test`: "
        "`tests/test_faults.py`, `tests/test_fuzz.py`) write `tests/.reliability.json`, the load "
        "test (`make load`) writes `load/results.json`, and `make reliability` renders this page. "
        f"Suites run {suites.get('written_at', '?')}"
        + (f", load run {load.get('finished_at', '?')}" if load else "")
        + ".",
        "",
        "| | |",
        "|---|---|",
        f"| fault cases (SMC, AWS, Lambda), each a full mixed workload | {len(faults)} |",
        f"| requests Segment made in them (retries included) | {total['requests']} |",
        f"| distinct events sent | {total['events']} |",
        f"| **events lost** | **{total['lost']}** |",
        f"| **duplicate rows in SMC** | **{total['duplicate_rows']}** |",
        f"| rows SMC received again and upserted (resends after a failure) | {total['resent_rows']} |",
        f"| events sent to SMC after Segment had its 200 (only when the idempotency store was down) "
        f"| {total['sent_after_ack']} |",
        f"| SMC calls made | {total['smc_calls']} |",
        f"| hostile inputs fuzzed (hypothesis) | {fuzz.get('inputs', 0)} |",
    ]
    if load:
        latency = load.get("latency_ms", {})
        lines.append(
            f"| load held ({load.get('duration_s')} s, {load.get('concurrency')} clients, one warm instance) "
            f"| {load.get('requests_per_s')} requests/s, {load.get('events_per_s')} events/s, "
            f"p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, errors {load.get('errors')}, "
            f"lost {load.get('events_lost')}, duplicates {load.get('duplicate_rows')} |"
        )
    lines += [
        "",
        "Each fault case sends the same realistic workload through the real handler, over real HTTP "
        "to the SMC sandbox and to moto (`tests/segment_sim.py`): ten requests, 34 distinct events "
        'of every call type: signed single events, a bearer array and a `{"batch": [...]}`, a '
        "duplicate inside a batch, a redelivered request, three events SMC or the handler refuses, "
        "two user deletions and membership changes whose end state depends on order. Segment's side "
        "retries the whole request on 5xx, 429, a time-out (5 s) or a dead Lambda, drops it on any "
        "other 4xx, at most 6-10 attempts. Then every event must be in SMC exactly once or named as "
        "refused in the answer; no `MESSAGE_ID` twice; the static segment holds exactly the members "
        "the last changes intended; deleted users have no rows; and nothing reaches SMC after Segment "
        "got its 200 (except with the idempotency store down, where replays go to SMC's upsert). "
        "Faults run with `RESPONSE_DEADLINE_MS=1000`, except the DynamoDB cases (production 4500).",
        "",
        "## Fault cases",
        "",
        "| case | requests | events | Segment saw | lost | duplicate rows | rows re-sent (upserted) "
        "| SMC calls | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in faults:
        lines.append(
            f"| {case['case']} | {case['requests']} | {case['events']} | {_statuses(case['statuses'])} "
            f"| {case['lost']} | {case['duplicate_rows']} | {case['resent_rows']} | {case['smc_calls']} "
            f"| {case['seconds']} |"
        )
    lines += ["", "## Hostile input (hypothesis)", "", "| property | inputs |", "|---|---|"]
    for name, count in sorted((fuzz.get("per_property") or {}).items()):
        lines.append(f"| {name} | {count} |")
    lines += [
        "",
        "Invariants checked on every input: no unhandled exception; no 5xx for bad input (the one "
        "5xx by design: an event naming a list or segment SMC lacks is retried); no SMC call for an "
        "unauthenticated request; no secret, e-mail address or trait value in any answer (and, at "
        "session end, in any log line or answer of the whole suite); every byte sent to SMC is "
        "valid UTF-8 JSON; list, segment and match-key names never leave their path segment or the "
        "SMC host; a replayed signed event adds no row; a captured signature never covers events "
        "appended to it.",
    ]
    if load:
        lines += [
            "",
            "## Load",
            "",
            f"Target: {load.get('target')}. Mix: {load.get('mix')}. Machine: {load.get('machine')}.",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        for key in (
            "duration_s",
            "requests",
            "events",
            "requests_per_s",
            "events_per_s",
            "mean_invocation_ms",
            "errors",
            "smc_calls",
            "events_per_smc_call",
            "events_lost",
            "duplicate_rows",
            "memberships_lost",
        ):
            if key in load and load[key] is not None:
                lines.append(f"| {key} | {load[key]} |")
        latency = load.get("latency_ms", {})
        lines.append(
            "| latency (client-side, queueing included) | "
            + ", ".join(f"{k} {v} ms" for k, v in latency.items())
            + " |"
        )
        lines += [
            "",
            "The local front runs one invocation at a time, as one warm Lambda instance does; "
            "latency includes waiting for the instance. Lambda adds instances under load "
            "(bounded by the template's reserved concurrency), each with this throughput.",
        ]
    lines += ["", BEHAVIOUR.read_text().rstrip(), ""]
    return "\n".join(lines)


def main() -> int:
    suites = _load(SUITES)
    if not isinstance(suites, dict) or not suites.get("faults"):
        print(f"no fault-suite figures in {SUITES}: run `make test` first", file=sys.stderr)
        return 1
    load = _load(LOAD)
    DOC.write_text(render(suites, load if isinstance(load, dict) else None))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
