"""The metrics an operator watches, in one list: `PANELS`.

The stack's CloudWatch dashboard (template.yaml, rendered from this list by `make dashboard`) and
`smc-destination status` are both built from it, so watching a new metric is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.outcomes import OUTCOMES

# What Powertools' EMF lines carry (template.yaml Globals: POWERTOOLS_METRICS_NAMESPACE and
# POWERTOOLS_SERVICE_NAME); tests/test_template.py keeps the two in step.
NAMESPACE = "SegmentSmcDestination"
SERVICE = "segment-smc-destination"
PERIOD_S = 300  # the dashboard's and the alarms' period
DASHBOARD_URL = (
    "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"
)


@dataclass(frozen=True, slots=True)
class Resource:
    """A stack resource that an AWS metric is about, and the dimension that names it."""

    logical_id: str
    dimension: str
    attribute: str | None = None  # the GetAtt attribute holding that name; None: its Ref

    @property
    def reference(self) -> str:
        """The resource's name as `Fn::Sub` writes it."""
        return f"${{{self.logical_id}{'.' + self.attribute if self.attribute else ''}}}"


WEBHOOK_FUNCTION = Resource("WebhookFunction", "FunctionName")
DELIVERY_FUNCTION = Resource("DeliveryFunction", "FunctionName")
DELIVERY_QUEUE = Resource("DeliveryQueue", "QueueName", "QueueName")
DEAD_LETTER_QUEUE = Resource("DeadLetterQueue", "QueueName", "QueueName")


@dataclass(frozen=True, slots=True)
class Metric:
    """One line of a panel: a CloudWatch metric and the statistic shown."""

    name: str
    label: str
    stat: str = "Sum"
    namespace: str = NAMESPACE
    resource: Resource | None = None  # None: the destination's own metric (dimension `service`)

    @property
    def dimension(self) -> tuple[str, str]:
        """The dimension's name and, for a resource, its `Fn::Sub` reference."""
        if self.resource is None:
            return "service", SERVICE
        return self.resource.dimension, self.resource.reference


@dataclass(frozen=True, slots=True)
class Panel:
    """One dashboard widget; with `status`, also a section of `smc-destination status`."""

    title: str
    metrics: tuple[Metric, ...]
    status: bool = False
    queued_only: bool = False  # its resources exist only in queued mode (condition IsQueued)


def outcome_metric(outcome: str) -> str:
    """The metric counting events of one outcome (handler/reporting.py): `EventsDelivered`, …"""
    return f"Events{outcome.capitalize()}"


def _lambda_health(resource: Resource) -> tuple[Metric, ...]:
    return (
        Metric("Errors", "errors", namespace="AWS/Lambda", resource=resource),
        Metric("Throttles", "throttles", namespace="AWS/Lambda", resource=resource),
    )


def _sqs(name: str, label: str, resource: Resource) -> Metric:
    return Metric(name, label, "Maximum", "AWS/SQS", resource)


PANELS: tuple[Panel, ...] = (
    Panel(
        "Events per outcome",
        tuple(Metric(outcome_metric(outcome), outcome) for outcome in OUTCOMES),
        status=True,
    ),
    Panel(
        "SMC requests by status class",
        (
            Metric("SmcRequests", "requests"),
            Metric("SmcResponses2xx", "2xx"),
            Metric("SmcResponses3xx", "3xx"),
            Metric("SmcResponses4xx", "4xx"),
            Metric("SmcResponses429", "429"),
            Metric("SmcResponses5xx", "5xx"),
            Metric("SmcConnectionErrors", "connection errors"),
        ),
        status=True,
    ),
    Panel(
        "Requests that could not be delivered at all",
        (
            Metric("ConfigurationErrors", "configuration errors"),  # a setting or the secret unusable
            Metric("UnexpectedErrors", "unexpected errors"),  # a bug: the request answered 500
        ),
        status=True,
    ),
    Panel("SMC latency (ms)", (Metric("SmcLatency", "p50", "p50"), Metric("SmcLatency", "p99", "p99"))),
    Panel("Handler latency (ms)", (Metric("HandlerLatency", "p99", "p99"),)),
    Panel("WebhookFunction errors and throttles", _lambda_health(WEBHOOK_FUNCTION), status=True),
    Panel("SMC key days left", (Metric("SmcKeyDaysLeft", "days left", "Minimum"),)),
    Panel(
        "DeliveryFunction errors and throttles",
        _lambda_health(DELIVERY_FUNCTION),
        status=True,
        queued_only=True,
    ),
    Panel(
        "Delivery queue",
        (
            _sqs("ApproximateNumberOfMessagesVisible", "queued messages", DELIVERY_QUEUE),
            _sqs("ApproximateAgeOfOldestMessage", "oldest message age (s)", DELIVERY_QUEUE),
            Metric("QueuedEventAgeSeconds", "oldest event age (s)", "Maximum"),
        ),
        status=True,
        queued_only=True,
    ),
    Panel(
        "Queued retries",
        (
            Metric("EventsRequeued", "retried later"),
            Metric("EventsDeadLettered", "dead-lettered"),
            Metric("EventsExpired", "expired"),
        ),
        status=True,
        queued_only=True,
    ),
    Panel(
        "Dead-letter queue depth",
        (_sqs("ApproximateNumberOfMessagesVisible", "dead letters", DEAD_LETTER_QUEUE),),
        status=True,
        queued_only=True,
    ),
)
