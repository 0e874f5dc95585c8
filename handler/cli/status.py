"""`smc-destination status`: how the deployed destination did over the last hours.

Reads the stack's metrics (CloudWatch GetMetricData) and prints one row per outcome, SMC answer,
function health and (queued mode) queue metric: its total over the window and a sparkline, oldest
bucket first. Then the most common reasons events were rejected or retried (CloudWatch Logs
Insights over the functions' logs, when allowed) and a verdict: exit code 1 when more than
--max-rejected-pct percent of the settled events were rejected, or were retried.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from handler.cli.common import EXIT_OK, EXIT_PROBLEMS, CliError, Findings
from handler.cli.insights import ReasonsUnavailable, top_reasons
from handler.cli.panels import DASHBOARD_URL, PANELS, Metric, Panel, outcome_metric
from handler.credentials import utc_time

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDataQueryTypeDef

EXAMPLES = """examples:
  smc-destination status --stack segment-smc-destination               # the last 3 hours
  smc-destination status --stack segment-smc-destination --hours 24 --max-rejected-pct 0.5
  smc-destination status --log-group /aws/lambda/NAME-webhook --end 2026-12-01T18:00Z
"""

BUCKETS = 24  # sparkline width
MAX_HOURS = 24 * 63  # CloudWatch keeps 5-minute data points for 63 days
SPARKS = "▁▂▃▄▅▆▇█"
LOG_GROUPS = ("FunctionLogGroup", "DeliveryFunctionLogGroup")  # template.yaml logical ids
JUDGED = ("rejected", "retried")
SETTLED = ("delivered", "filtered", "duplicate", "rejected", "retried")  # "enqueued" settles later
_WINDOW_VALUE: dict[str, Callable[[list[float]], float]] = {"Sum": sum, "Minimum": min}  # others: max
# Requests stopped before any event was settled: they count in no outcome, so each is judged alone.
STOPPED = {
    "ConfigurationErrors": "a setting or the secret is unusable (every request fails until fixed): "
    "run `smc-destination check` and read the function's `cannot deliver` log lines",
    "UnexpectedErrors": "the function crashed on requests (answered 500, Segment retries): read its "
    "`function crashed` log lines",
}
_FIXES = {
    "rejected": "rejected events are lost: fix their cause (reasons above), then resend them with "
    "`smc-destination replay`",
    "retried": "SMC or AWS failed retryably (SMC answers above): run `smc-destination check`; "
    "Segment (or the queue) retries for hours",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `status`."""
    parser = commands.add_parser(
        "status",
        help="outcomes, SMC answers and top rejection reasons of the deployed stack over the last hours",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", help="the CloudFormation stack (its functions, queues and log groups)")
    parser.add_argument(
        "--log-group",
        action="append",
        default=[],
        metavar="NAME",
        help="a log group to find the rejection reasons in, besides the stack's; repeatable",
    )
    parser.add_argument("--hours", type=float, default=3, help="the window (default: %(default)s)")
    parser.add_argument("--end", type=utc_time, help="the window's end, ISO 8601 (default: now; UTC)")
    parser.add_argument(
        "--max-rejected-pct",
        type=float,
        default=1.0,
        metavar="PCT",
        help="exit 1 when more than PCT%% of the settled events were rejected, or retried "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--logs-timeout",
        type=float,
        default=30,
        help="seconds to wait for Logs Insights (default: %(default)s)",
    )
    parser.add_argument("--region", help="AWS region of the stack (default: the AWS CLI's)")
    parser.add_argument("--profile", help="AWS profile")
    parser.add_argument("--verbose", action="store_true", help="show the client's log lines on stderr")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Window:
    """`buckets` periods of `period_s` seconds, ending on a period boundary."""

    start: datetime
    period_s: int
    buckets: int

    @property
    def end(self) -> datetime:
        """Where the last bucket ends."""
        return self.start + timedelta(seconds=self.period_s * self.buckets)


def window(hours: float, end: datetime) -> Window:
    """About `hours` hours up to `end`, in at most `BUCKETS` whole-minute periods."""
    seconds = hours * 3600
    # CloudWatch answers data older than 15 days only for periods of whole 5 minutes, older than
    # 63 days whole hours: coarse windows round their period up to 5 minutes.
    unit = 60 if hours <= 15 * 24 else 300
    period = max(60, math.ceil(seconds / BUCKETS / unit) * unit)
    buckets = math.ceil(seconds / period)
    last = datetime.fromtimestamp(math.ceil(end.timestamp() / period) * period, UTC)
    return Window(last - timedelta(seconds=period * buckets), period, buckets)


@dataclass(slots=True)
class Row:
    """One metric over the window: a value per bucket (None: no data point)."""

    metric: Metric
    values: list[float | None]

    @property
    def total(self) -> float | None:
        """The window's value: the sum of counts, else the lowest or highest bucket."""
        present = [v for v in self.values if v is not None]
        if not present:
            return None
        return _WINDOW_VALUE.get(self.metric.stat, max)(present)


def stack_resources(session: boto3.session.Session, stack: str) -> dict[str, str]:
    """The stack's resources: logical id -> physical id (names, queue URLs)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = session.client("cloudformation").describe_stack_resources(StackName=stack)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(
            f"cannot read stack {stack!r}: {exc}",
            "pass --stack with the deployed stack's name (samconfig.toml stack_name), and its --region",
        ) from None
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in answer["StackResources"]}


def _dimension(metric: Metric, resources: dict[str, str]) -> DimensionTypeDef | None:
    name, value = metric.dimension
    if metric.resource is not None:
        physical = resources.get(metric.resource.logical_id)
        if not physical:
            return None
        value = physical.rsplit("/", 1)[-1]  # a queue's physical id is its URL
    return {"Name": name, "Value": value}


def read_metrics(
    cloudwatch: CloudWatchClient, panels: Iterable[Panel], resources: dict[str, str], span: Window
) -> list[tuple[Panel, list[Row]]]:
    """Every metric of `panels` whose resource is known, one value per bucket (GetMetricData)."""
    sections: list[tuple[Panel, list[Row]]] = []
    queries: list[MetricDataQueryTypeDef] = []
    rows: dict[str, Row] = {}
    for panel in panels:
        section = []
        for metric in panel.metrics:
            dimension = _dimension(metric, resources)
            if dimension is None:
                continue
            query_id = f"m{len(queries)}"
            query: MetricDataQueryTypeDef = {
                "Id": query_id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": metric.namespace,
                        "MetricName": metric.name,
                        "Dimensions": [dimension],
                    },
                    "Period": span.period_s,
                    "Stat": metric.stat,
                },
            }
            queries.append(query)
            rows[query_id] = section_row = Row(metric, [None] * span.buckets)
            section.append(section_row)
        if section:
            sections.append((panel, section))
    if not queries:
        return sections
    pages = cloudwatch.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries, StartTime=span.start, EndTime=span.end, ScanBy="TimestampAscending"
    )
    for page in pages:
        for result in page["MetricDataResults"]:
            values = rows[result["Id"]].values
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                bucket = int((stamp - span.start).total_seconds() // span.period_s)
                if 0 <= bucket < span.buckets:
                    values[bucket] = value
    return sections


def sparkline(values: Sequence[float | None]) -> str:
    """One character per bucket, ▁ (zero) to █ (the highest); a space where there was no data."""
    top = max((v for v in values if v is not None), default=0.0)
    line = ""
    for value in values:
        if value is None:
            line += " "
        else:
            line += SPARKS[round(max(0.0, value) / top * (len(SPARKS) - 1)) if top > 0 else 0]
    return line


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _print_table(sections: list[tuple[Panel, list[Row]]], span: Window) -> None:
    minutes = span.period_s // 60
    for panel, rows in sections:
        print(f"\n{panel.title:<42}{'total':>10}  {minutes} min per mark, oldest first")
        for row in rows:
            stat = row.metric.stat
            label = row.metric.label if stat == "Sum" else f"{row.metric.label}, {stat.lower()}"
            print(f"  {label:<40}{_number(row.total):>10}  {sparkline(row.values)}".rstrip())


def _print_reasons(
    args: argparse.Namespace, session: boto3.session.Session, log_groups: list[str], span: Window
) -> None:
    if not log_groups:
        print("\nnote: no log group to read the reasons from: pass --stack or --log-group")
        return
    print(f"\nTop reasons for rejected and retried events ({', '.join(log_groups)})")
    end = min(span.end, datetime.now(UTC))
    try:
        reasons = top_reasons(session.client("logs"), log_groups, span.start, end, args.logs_timeout)
    except ReasonsUnavailable as exc:
        print(f"  note: no reasons: {exc}")
        return
    if not reasons:
        print("  none logged in the window")
    for reason in reasons:
        print(f"  {reason.events:>8,}  {reason.outcome:<9} {reason.reason[:140]}")


def judge(sections: list[tuple[Panel, list[Row]]], max_pct: float, findings: Findings) -> None:
    """Rejected and retried events as a share of the settled ones: a FAIL above `max_pct`."""
    totals = {row.metric.name: row.total or 0 for _, rows in sections for row in rows}
    for name, fix in STOPPED.items():
        if totals.get(name, 0) > 0:
            findings.fail(f"{name}: {totals[name]:,.0f} in the window", fix)
    settled = sum(totals.get(outcome_metric(o), 0) for o in SETTLED)
    if not settled:
        findings.warn("no events were settled in the window: nothing to judge")
        return
    for outcome in JUDGED:
        number = totals.get(outcome_metric(outcome), 0)
        pct = 100 * number / settled
        line = f"{outcome}: {pct:.2f}% of {settled:,.0f} settled events ({number:,.0f}); at most {max_pct:g}%"
        if pct > max_pct:
            findings.fail(line, _FIXES[outcome])
        else:
            findings.ok(line)


def run(args: argparse.Namespace) -> int:
    """Print the table, the reasons and the verdict; 1 when too many events were rejected or retried."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not 0 < args.hours <= MAX_HOURS:
        raise CliError(f"--hours must be above 0 and at most {MAX_HOURS}", "e.g. --hours 3")
    if not 0 <= args.max_rejected_pct <= 100:  # also refuses nan
        raise CliError("--max-rejected-pct must be between 0 and 100", "e.g. --max-rejected-pct 1")
    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    if not session.region_name:
        raise CliError("no AWS region", "pass --region (the stack's), or set AWS_DEFAULT_REGION")
    resources = stack_resources(session, args.stack) if args.stack else {}
    span = window(args.hours, args.end or datetime.now(UTC))
    panels = [panel for panel in PANELS if panel.status]
    try:
        sections = read_metrics(session.client("cloudwatch"), panels, resources, span)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(
            f"cannot read the metrics: {exc}", "check AWS credentials, region and cloudwatch:GetMetricData"
        ) from None
    stamp = "%Y-%m-%d %H:%M"
    print(
        f"status of {args.stack or 'the destination'} in {session.region_name}, "
        f"{span.start:{stamp}} to {span.end:{stamp}} UTC"
    )
    _print_table(sections, span)
    if not args.stack:
        print("\nnote: pass --stack to see the functions' errors and throttles and the queues")
    log_groups = [resources[name] for name in LOG_GROUPS if resources.get(name)] + args.log_group
    _print_reasons(args, session, log_groups, span)
    if resources.get("Dashboard"):
        print(f"\ndashboard: {DASHBOARD_URL.format(region=session.region_name, name=resources['Dashboard'])}")
    print()
    findings = Findings()
    judge(sections, args.max_rejected_pct, findings)
    return EXIT_PROBLEMS if findings.problems else EXIT_OK
