"""`smc-destination status` against moto over HTTP: the metrics and stacks the tests put there."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from handler.cli import main
from handler.cli.insights import Reason, parse_results
from handler.cli.panels import NAMESPACE, SERVICE
from handler.cli.status import sparkline
from tests.aws_fault_proxy import AwsFaultProxy

_days = itertools.count()


def past_end() -> datetime:
    """A window end of its own: moto's metric store is shared by the whole test session."""
    return datetime(2026, 6, 1, tzinfo=UTC) + timedelta(days=next(_days))


@pytest.fixture
def cloudwatch(moto_endpoint: str) -> Any:
    return boto3.client("cloudwatch")


def put(cloudwatch: Any, name: str, value: float, at: datetime, **dimension: str) -> None:
    """One data point of the destination's own metrics, or of an AWS one (`namespace`, dimension)."""
    namespace = dimension.pop("namespace", NAMESPACE)
    (key, dim_value), *_ = (dimension or {"service": SERVICE}).items()
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": key, "Value": dim_value}],
                "Timestamp": at,
                "Value": value,
            }
        ],
    )


def traffic(cloudwatch: Any, end: datetime, **totals: float) -> None:
    """`totals` per metric, put in the window's last five minutes."""
    for name, value in totals.items():
        put(cloudwatch, name, value, end - timedelta(minutes=2))


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["status", *args])
    return code, capsys.readouterr().out


def row(out: str, label: str) -> tuple[str, str]:
    """A table row's window value and sparkline (the table's columns are fixed)."""
    line = next(line for line in out.splitlines() if line[2:42].rstrip() == label)
    return line[42:52].strip(), line[54:]


@pytest.fixture
def queued_stack(moto_endpoint: str) -> Iterator[dict[str, str]]:
    """A stack with template.yaml's logical ids for what status reads: log group, queues, dashboard."""
    name = f"smc-{uuid.uuid4().hex[:8]}"
    resources = {
        "FunctionLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{name}"},
        },
        "DeliveryQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-queue"}},
        "DeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-dlq"}},
        "Dashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {"DashboardName": name, "DashboardBody": '{"widgets": []}'},
        },
    }
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": resources}))
    yield {"name": name, "queue": f"{name}-queue", "dlq": f"{name}-dlq", "log_group": f"/aws/lambda/{name}"}
    cfn.delete_stack(StackName=name)


def test_status_shows_outcomes_smc_answers_and_queues_when_the_stack_had_traffic(
    cloudwatch: Any, queued_stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two hours of traffic: delivered in every 5-minute bucket, most in the last one
    end = past_end()
    for bucket in range(24):
        at = end - timedelta(hours=2) + timedelta(minutes=5 * bucket + 1)
        put(cloudwatch, "EventsDelivered", 80 if bucket == 23 else 10, at)
    traffic(cloudwatch, end, EventsRejected=1, EventsFiltered=3, SmcRequests=24, SmcResponses2xx=24)
    for depth, minutes in ((7, 30), (3, 3)):  # the delivery queue's depth, twice
        at = end - timedelta(minutes=minutes)
        queue = queued_stack["queue"]
        put(cloudwatch, "ApproximateNumberOfMessagesVisible", depth, at, namespace="AWS/SQS", QueueName=queue)
    # When status reads the stack's last two hours
    code, out = status(capsys, "--stack", queued_stack["name"], "--hours", "2", "--end", end.isoformat())
    # Then each outcome and SMC answer has its total and a sparkline, oldest bucket first
    assert code == 0, out
    assert row(out, "delivered") == ("310", "▂" * 23 + "█")
    assert row(out, "rejected")[0] == "1" and row(out, "filtered")[0] == "3"
    assert row(out, "2xx")[0] == "24" and row(out, "5xx") == ("-", "")
    # the queue's row is its highest depth; the dead-letter queue had no data
    assert row(out, "queued messages, maximum")[0] == "7"
    assert row(out, "dead letters, maximum") == ("-", "")
    assert f"#dashboards/dashboard/{queued_stack['name']}" in out
    assert "ok    rejected: 0.32% of 314 settled events (1); at most 1%" in out
    assert "ok    retried: 0.00% of 314 settled events (0)" in out


def test_status_exits_1_when_rejected_events_exceed_the_threshold(
    cloudwatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    end = past_end()
    traffic(cloudwatch, end, EventsDelivered=970, EventsRejected=30)
    code, out = status(capsys, "--end", end.isoformat(), "--hours", "1")
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL  rejected: 3.00% of 1,000 settled events (30); at most 1%")
    assert "-> fix: rejected events are lost" in line
    # a looser threshold passes the same window
    code, out = status(capsys, "--end", end.isoformat(), "--hours", "1", "--max-rejected-pct", "5")
    assert code == 0, out


def test_status_exits_1_when_retried_events_exceed_the_threshold(
    cloudwatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    end = past_end()
    traffic(cloudwatch, end, EventsDelivered=90, EventsRetried=10, SmcResponses5xx=4)
    code, out = status(capsys, "--end", end.isoformat())
    assert code == 1
    assert "FAIL  retried: 10.00% of 100 settled events (10)" in out
    assert "smc-destination check" in out


@pytest.mark.parametrize("metric", ["ConfigurationErrors", "UnexpectedErrors"])
def test_status_exits_1_when_requests_failed_before_any_event_was_settled(
    cloudwatch: Any, capsys: pytest.CaptureFixture[str], metric: str
) -> None:
    # a typo in a setting or a crash: no outcome is counted at all, yet nothing is delivered
    end = past_end()
    traffic(cloudwatch, end, **{metric: 12})
    code, out = status(capsys, "--end", end.isoformat())
    assert code == 1
    assert f"FAIL  {metric}: 12 in the window" in out


def test_a_window_longer_than_fifteen_days_uses_whole_five_minute_periods() -> None:
    from handler.cli.status import window

    for hours in (361, 401, 1000, 24 * 63):
        assert window(hours, datetime.now(UTC)).period_s % 300 == 0, hours
    assert window(3, datetime.now(UTC)).period_s % 60 == 0


def test_status_warns_and_says_what_it_lacks_when_there_is_no_traffic_and_no_stack(
    cloudwatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = status(capsys, "--end", past_end().isoformat())
    assert code == 0
    assert "warn  no events were settled in the window" in out
    assert "note: pass --stack to see the functions' errors" in out
    assert "note: no log group to read the reasons from" in out
    assert "WebhookFunction errors" not in out


def test_status_notes_in_one_line_when_logs_insights_does_not_run_stats(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a log group holding 'event not delivered' lines (moto answers without running stats)
    group = f"/aws/lambda/{uuid.uuid4().hex[:8]}-webhook"
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    line = {"message": "event not delivered", "outcome": "rejected", "reason": "track requires event"}
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now_ms - 1000, "message": json.dumps(line)}],
    )
    code, out = status(capsys, "--log-group", group, "--hours", "1")
    assert code == 0
    (note,) = [line for line in out.splitlines() if "note: no reasons" in line]
    assert "Logs Insights answered without counts" in note


def test_status_notes_in_one_line_when_the_log_group_does_not_exist(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = status(capsys, "--log-group", "/aws/lambda/none-such", "--end", past_end().isoformat())
    assert code == 0
    assert "  note: no reasons: log group not found: /aws/lambda/none-such" in out


def test_status_notes_in_one_line_when_querying_the_logs_is_not_allowed(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = AwsFaultProxy(moto_endpoint, "logs").start()
    try:
        proxy.set_mode("deny")
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", proxy.url)
        code, out = status(capsys, "--log-group", "/aws/lambda/x", "--end", past_end().isoformat())
    finally:
        proxy.stop()
    assert code == 0
    assert (
        "  note: no reasons: not allowed to query the logs (logs:StartQuery and logs:GetQueryResults)" in out
    )
    assert proxy.failed == 1


def test_status_is_a_usage_error_when_the_stack_does_not_exist(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--stack", "no-such-stack"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot read stack 'no-such-stack'" in err and "fix: pass --stack" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hours", "0"], "--hours must be above 0"),
        (["--max-rejected-pct", "-1"], "--max-rejected-pct must be between 0 and 100"),
        (["--max-rejected-pct", "nan"], "--max-rejected-pct must be between 0 and 100"),
        ([], "no AWS region"),
    ],
)
def test_status_is_a_usage_error_when_a_flag_or_the_region_is_wrong(
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    if not args:
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        monkeypatch.delenv("AWS_REGION")
    assert main(["status", *args]) == 2
    assert message in capsys.readouterr().err


def test_reasons_are_read_from_logs_insights_rows_when_stats_ran() -> None:
    rows = [
        [
            {"field": "outcome", "value": "rejected"},
            {"field": "reason", "value": "track requires event"},
            {"field": "events", "value": "12"},
        ],
        [{"field": "outcome", "value": "retried"}, {"field": "events", "value": "3"}],
    ]
    assert parse_results(rows) == [
        Reason(12, "rejected", "track requires event"),
        Reason(3, "retried", "-"),
    ]


def test_sparkline_scales_to_the_highest_value_and_leaves_gaps_when_data_is_missing() -> None:
    assert sparkline([0, 1, 2, 4, 8, None, 8]) == "▁▂▃▅█ █"
    assert sparkline([0, 0, None]) == "▁▁ "
