"""template.yaml and samconfig.toml agree with the code: handler, settings, IAM, observability."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "WebhookFunction"
POWERTOOLS_VARS = {
    "POWERTOOLS_SERVICE_NAME": "segment-smc-destination",
    "POWERTOOLS_METRICS_NAMESPACE": "SegmentSmcDestination",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
    "POWERTOOLS_TRACER_CAPTURE_ERROR": "false",
}
# Settings that would put payloads (PII) or secrets into logs and traces.
FORBIDDEN_SETTINGS = ("POWERTOOLS_DEV", "POWERTOOLS_LOGGER_LOG_EVENT", "POWERTOOLS_DEBUG")
IAM_ACTIONS = {
    "secretsmanager:GetSecretValue",  # handler/credentials.py (Powertools parameters.get_secret)
    "dynamodb:GetItem",  # handler/idempotency.py (Powertools DynamoDBPersistenceLayer)
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchGetItem",  # handler/ordering.py reads
    "dynamodb:BatchWriteItem",  # handler/transactional.py settles
    "sqs:SendMessage",  # handler/queue.py send (queued mode only)
}
DELIVERY_IAM_ACTIONS = {
    "secretsmanager:GetSecretValue",
    "dynamodb:BatchGetItem",  # handler/ordering.py, handler/transactional.py (StateTable)
    "dynamodb:PutItem",
    "dynamodb:BatchWriteItem",
    "sqs:SendMessage",  # handler/consumer.py: dead letters, and retried events as delayed messages
    "sqs:ChangeMessageVisibility",  # handler/consumer.py: a message whose retry was not written
}


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short tags (!Ref, !Sub, !GetAtt, ...) into their long form."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"][FUNCTION]


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def function_env(template: dict[str, Any], function: str = FUNCTION) -> dict[str, Any]:
    """The function's variables as SAM merges them: Globals first, the function's own on top."""
    merged = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    own = template["Resources"][function]["Properties"].get("Environment", {})
    merged.update(own.get("Variables", {}))
    return merged


def function_setting(template: dict[str, Any], key: str) -> Any:
    own = template["Resources"][FUNCTION]["Properties"]
    return own[key] if key in own else template["Globals"]["Function"][key]


def settings_env_from_defaults(template: dict[str, Any], required: dict[str, str]) -> dict[str, str]:
    """The environment the deployed function gets when every parameter keeps its default."""
    params = template["Parameters"]
    env = {}
    for name, value in function_env(template).items():
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in params:
            param = params[value["Ref"]]
            env[name] = required.get(name, str(param.get("Default", "")))
    env.update({k: v for k, v in required.items() if k not in env})
    return env


# --- the handler ---------------------------------------------------------------------------


def test_handler_resolves_to_a_callable(function: dict[str, Any]) -> None:
    module_name, _, attribute = function["Properties"]["Handler"].rpartition(".")
    assert module_name == "handler.app", "the build copies the handler package to the artifact root"
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute))


def test_function_runtime_build_and_sizing(template: dict[str, Any], function: dict[str, Any]) -> None:
    props = function["Properties"]
    assert function_setting(template, "Runtime") == "python3.13"
    assert function_setting(template, "Architectures") == ["arm64"]
    assert function_setting(template, "Tracing") == "Active"
    assert function["Metadata"] == {"BuildMethod": "makefile"}
    assert props["CodeUri"] == "."
    assert props["MemorySize"] >= 512
    # Answers by RESPONSE_DEADLINE_MS, well inside the function timeout and the HTTP API's 30 s.
    assert props["Timeout"] < 30
    assert template["Parameters"]["ResponseDeadlineMs"]["MaxValue"] < props["Timeout"] * 1000
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^build-(\S+ )*{FUNCTION}\b.*:", makefile, re.MULTILINE), "sam build runs this target"


# --- settings <-> environment --------------------------------------------------------------


def test_every_setting_is_set_by_the_template_and_nothing_else(template: dict[str, Any]) -> None:
    from handler.settings import ENV_VARS

    env = function_env(template)
    assert set(ENV_VARS) == set(env) - set(POWERTOOLS_VARS) - {"POWERTOOLS_LOG_LEVEL"}


def test_each_setting_comes_from_a_parameter_or_a_stack_resource(template: dict[str, Any]) -> None:
    from handler.settings import ENV_VARS

    env = function_env(template)
    from_resources = {
        "SMC_SECRET_ID",
        "IDEMPOTENCY_TABLE",
        "STATE_TABLE",
        "DELIVERY_QUEUE_URL",
        "DEAD_LETTER_QUEUE_URL",
    }
    for name in ENV_VARS:
        if name in from_resources:
            continue
        ref = env[name]
        assert isinstance(ref, dict) and ref.get("Ref") in template["Parameters"], name
        assert name in template["Parameters"][ref["Ref"]]["Description"], "each parameter names its variable"
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    assert env["STATE_TABLE"] == {"Ref": "StateTable"}
    assert env["SMC_SECRET_ID"] == {
        "Fn::If": ["CreateSecret", {"Ref": "WebhookSecret"}, {"Ref": "ExistingSecretArn"}]
    }
    assert env["DELIVERY_QUEUE_URL"] == {"Fn::If": ["IsQueued", {"Ref": "DeliveryQueue"}, ""]}
    assert env["DEAD_LETTER_QUEUE_URL"] == {"Fn::If": ["IsQueued", {"Ref": "DeadLetterQueue"}, ""]}


def test_template_defaults_mean_the_code_defaults(template: dict[str, Any]) -> None:
    from handler.settings import load_settings

    required = {
        "SMC_ADMIN_URL": "https://acme.slgnt.us",
        "SMC_ORGANIZATION": "acme",
        "SMC_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
        "IDEMPOTENCY_TABLE": "table",
    }
    assert load_settings(settings_env_from_defaults(template, required)) == load_settings(required)


@pytest.mark.parametrize("bound", ["MinValue", "MaxValue"])
def test_numeric_parameter_bounds_are_accepted_by_the_code(template: dict[str, Any], bound: str) -> None:
    from handler.settings import load_settings

    params = template["Parameters"]
    env = settings_env_from_defaults(
        template,
        {
            "SMC_ADMIN_URL": "https://acme.slgnt.us",
            "SMC_ORGANIZATION": "acme",
            "SMC_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
            "IDEMPOTENCY_TABLE": "table",
        },
    )
    for name, value in function_env(template).items():
        if (
            isinstance(value, dict)
            and value.get("Ref") in params
            and params[value["Ref"]]["Type"] == "Number"
        ):
            env[name] = str(params[value["Ref"]][bound])
    load_settings(env)  # raises SettingsError naming a variable the template lets through


def test_env_json_sets_only_what_the_template_declares(template: dict[str, Any]) -> None:
    from handler.settings import ENV_VARS, load_settings

    env = json.loads((ROOT / "events" / "env.json").read_text())[FUNCTION]
    # sam local invoke --env-vars silently ignores variables the template does not declare.
    assert set(env) <= set(function_env(template))
    assert set(ENV_VARS) <= set(env)
    settings = load_settings(env)
    assert settings.smc_base_url == "http://127.0.0.1:8899/Portal/Api"


# --- Powertools, logs, tracing -------------------------------------------------------------


def test_powertools_settings_never_log_payloads(template: dict[str, Any]) -> None:
    env = function_env(template)
    for name, value in POWERTOOLS_VARS.items():
        assert env[name] == value
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert template["Parameters"]["LogLevel"]["Default"] == "INFO"
    text = (ROOT / "template.yaml").read_text()
    for forbidden in FORBIDDEN_SETTINGS:
        assert forbidden not in text
    for name in (FUNCTION, "DeliveryFunction"):
        own = properties(template, name).get("Environment", {}).get("Variables", {})
        assert not any(key.startswith("POWERTOOLS_") for key in own)


def test_log_groups_have_retention(template: dict[str, Any], function: dict[str, Any]) -> None:
    props = function["Properties"]
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    function_log_group = properties(template, "FunctionLogGroup")
    # /aws/lambda/<function name>, the name Lambda itself would use.
    assert function_log_group["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/" + props["FunctionName"]["Fn::Sub"]
    }
    api_log = properties(template, "HttpApi")["AccessLogSettings"]
    assert api_log["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    for group in ("FunctionLogGroup", "ApiAccessLogGroup"):
        assert properties(template, group)["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert template["Parameters"]["LogRetentionInDays"]["Default"] == 30


def test_access_logs_carry_no_headers_or_bodies(template: dict[str, Any]) -> None:
    log_format = properties(template, "HttpApi")["AccessLogSettings"]["Format"]
    json.loads(log_format.replace("\n", ""))  # one JSON object per request
    for leak in ("header", "authorization", "signature", "body", "querystring"):
        assert leak not in log_format.lower()


# --- IAM -----------------------------------------------------------------------------------


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement, with a conditional one (`Fn::If`) read as granted."""
    policies = function["Properties"]["Policies"]
    assert all(isinstance(policy, dict) for policy in policies), "no managed or SAM policy templates"
    found = []
    for policy in policies:
        for statement in policy["Statement"]:
            if "Fn::If" in statement:
                statement = statement["Fn::If"][1]
            found.append(statement)
    return found


def test_iam_grants_only_what_the_code_calls(function: dict[str, Any]) -> None:
    statements = _statements(function)
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions.update(_as_list(statement["Action"]))
    assert actions == IAM_ACTIONS


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_iam_resources_are_the_stacks_own(function: dict[str, Any]) -> None:
    resources = {statement["Sid"]: statement["Resource"] for statement in _statements(function)}
    assert resources == {
        "ReadCredentials": {
            "Fn::If": ["CreateSecret", {"Ref": "WebhookSecret"}, {"Ref": "ExistingSecretArn"}]
        },
        "IdempotencyRecords": {"Fn::GetAtt": ["IdempotencyTable", "Arn"]},
        "StateRecords": {"Fn::GetAtt": ["StateTable", "Arn"]},
        "EnqueueEvents": {"Fn::GetAtt": ["DeliveryQueue", "Arn"]},
    }
    assert "*" not in json.dumps(resources)


def test_state_records_are_writable_only_under_their_own_key_prefixes(template: dict[str, Any]) -> None:
    from handler import ordering, transactional

    for name in ("WebhookFunction", "DeliveryFunction"):
        (statement,) = [s for s in _statements(template["Resources"][name]) if s["Sid"] == "StateRecords"]
        condition = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert condition == [f"{ordering.KEY_PREFIX}*", f"{transactional.KEY_PREFIX}*"]


def test_delivery_function_grants_only_what_the_consumer_calls(template: dict[str, Any]) -> None:
    delivery = template["Resources"]["DeliveryFunction"]
    assert delivery["Condition"] == "IsQueued"
    statements = _statements(delivery)
    actions = {a for statement in statements for a in _as_list(statement["Action"])}
    assert actions == DELIVERY_IAM_ACTIONS
    resources = {statement["Sid"]: statement["Resource"] for statement in statements}
    assert resources["DeadLetters"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert resources["RetryLater"] == {"Fn::GetAtt": ["DeliveryQueue", "Arn"]}
    assert "*" not in json.dumps(resources)


def test_queued_mode_consumes_with_partial_batch_responses(template: dict[str, Any]) -> None:
    delivery = template["Resources"]["DeliveryFunction"]
    props = delivery["Properties"]
    assert props["Handler"] == "handler.consumer.lambda_handler"
    assert callable(importlib.import_module("handler.consumer").lambda_handler)
    (source,) = props["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "QueueMaxConcurrency"}}
    assert source["Properties"]["MaximumBatchingWindowInSeconds"] >= 1
    queue = properties(template, "DeliveryQueue")
    assert queue["VisibilityTimeout"] >= 6 * props["Timeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceives"}
    assert template["Resources"]["DeadLetterQueueDepthAlarm"]["Condition"] == "IsQueued"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^build-WebhookFunction build-DeliveryFunction:", makefile, re.MULTILINE)


def test_retried_events_may_go_back_to_the_delivery_queue_and_nowhere_else(template: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(template["Resources"]["DeliveryFunction"])}
    retry_later = set(_as_list(statements["RetryLater"]["Action"]))
    assert retry_later == {"sqs:SendMessage", "sqs:ChangeMessageVisibility"}
    assert _as_list(statements["DeadLetters"]["Action"]) == ["sqs:SendMessage"]


def test_max_event_age_is_a_parameter_within_the_queues_retention(template: dict[str, Any]) -> None:
    from handler.settings import QUEUE_RETENTION_SECONDS, load_settings

    parameter = template["Parameters"]["MaxEventAge"]
    required = {"SMC_ADMIN_URL": "https://acme.slgnt.eu", "SMC_ORGANIZATION": "acme"}
    defaults = load_settings({**required, "SMC_SECRET_ID": "s", "IDEMPOTENCY_TABLE": "t"})
    assert parameter["Default"] == defaults.max_event_age_seconds == 4 * 86400
    assert parameter["MaxValue"] == QUEUE_RETENTION_SECONDS
    for queue in ("DeliveryQueue", "DeadLetterQueue"):
        assert properties(template, queue)["MessageRetentionPeriod"] == QUEUE_RETENTION_SECONDS
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MAX_EVENT_AGE_SECONDS"] == {"Ref": "MaxEventAge"}


def test_the_backlog_age_alarm_follows_max_event_age(template: dict[str, Any]) -> None:
    alarm = properties(template, "DeliveryBacklogAgeAlarm")
    # A share of MaxEventAge (the consumer emits its oldest event's age as a percentage of it):
    # it fires days before the first event expires, whatever MaxEventAge is.
    assert alarm["MetricName"] == "QueuedEventAgePercent" and alarm["Namespace"] == "SegmentSmcDestination"
    assert 0 < alarm["Threshold"] <= 50
    consumer = (ROOT / "handler" / "consumer.py").read_text()
    assert 'gauge("QueuedEventAgePercent"' in consumer


def test_code_uses_no_other_aws_service() -> None:
    # The operator commands (handler/cli, not in the Lambda artifact) run with the operator's rights.
    paths = [p for p in (ROOT / "handler").rglob("*.py") if "cli" not in p.relative_to(ROOT).parts]
    sources = "\n".join(path.read_text() for path in paths)
    clients = set(re.findall(r"""\.client\(\s*["']([a-z0-9-]+)["']""", sources))
    assert clients <= {"secretsmanager", "dynamodb", "sqs"}


# --- storage and secret --------------------------------------------------------------------


def test_idempotency_table_matches_powertools(template: dict[str, Any]) -> None:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    table = properties(template, "IdempotencyTable")
    layer = DynamoDBPersistenceLayer(table_name="t")  # the handler uses the default attribute names
    assert table["KeySchema"] == [{"AttributeName": layer.key_attr, "KeyType": "HASH"}]
    assert table["KeySchema"][0]["AttributeName"] == "id"
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": layer.expiry_attr, "Enabled": True}
    assert layer.expiry_attr == "expiration"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_secret_is_created_only_without_an_existing_arn(template: dict[str, Any]) -> None:
    from handler.credentials import parse_secret

    secret = template["Resources"]["WebhookSecret"]
    assert secret["Condition"] == "CreateSecret"
    assert template["Conditions"]["CreateSecret"] == {"Fn::Equals": [{"Ref": "ExistingSecretArn"}, ""]}
    generate = secret["Properties"]["GenerateSecretString"]
    placeholders = json.loads(generate["SecretStringTemplate"])
    assert set(placeholders.values()) == {"SET-ME"}, "nothing real in the template"
    assert generate["PasswordLength"] >= 32
    # What CloudFormation stores has every field the code requires.
    parse_secret({**placeholders, generate["GenerateStringKey"]: "x" * generate["PasswordLength"]})


# --- API, concurrency, alarms, outputs -----------------------------------------------------


def test_route_is_post_segment_payload_v2(function: dict[str, Any], template: dict[str, Any]) -> None:
    events = function["Properties"]["Events"]
    assert len(events) == 1
    (event,) = events.values()
    assert event["Type"] == "HttpApi"
    assert event["Properties"] == {
        "ApiId": {"Ref": "HttpApi"},
        "Method": "POST",
        "Path": "/segment",
        "PayloadFormatVersion": "2.0",
    }
    throttling = properties(template, "HttpApi")["DefaultRouteSettings"]
    assert throttling == {
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
    }


def test_reserved_concurrency_is_optional(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert template["Parameters"]["ReservedConcurrency"]["Default"] == ""
    assert function["Properties"]["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    condition = json.dumps(template["Conditions"]["HasReservedConcurrency"])
    assert (
        '"Ref": "ReservedConcurrency"}, ""' in condition and '"Ref": "ReservedConcurrency"}, "0"' in condition
    )


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_alarms_notify_only_when_a_topic_is_given(template: dict[str, Any]) -> None:
    alarms = _alarms(template)
    assert len(alarms) == 11  # eight for both modes, three for the queues
    for logical_id, props in alarms.items():
        # No traffic is no failure; only the key-expiry alarm, fed once per cold start, keeps its state.
        expected = "ignore" if logical_id == "SmcKeyExpiryAlarm" else "notBreaching"
        assert props["TreatMissingData"] == expected, logical_id
        assert props["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_alarms_watch_metrics_the_code_emits(template: dict[str, Any]) -> None:
    from handler.outcomes import OUTCOMES

    sources = "\n".join(path.read_text() for path in (ROOT / "handler").rglob("*.py"))
    emitted = set(re.findall(r"""(?:count|gauge)\(\s*["']([A-Za-z0-9]+)["']""", sources))
    emitted |= {f"Events{outcome.capitalize()}" for outcome in OUTCOMES}
    watched = {}
    for props in _alarms(template).values():
        if props.get("Namespace") == POWERTOOLS_VARS["POWERTOOLS_METRICS_NAMESPACE"]:
            assert props["Dimensions"] == [
                {"Name": "service", "Value": POWERTOOLS_VARS["POWERTOOLS_SERVICE_NAME"]}
            ]
            watched[props["MetricName"]] = props
    assert set(watched) == {
        "SmcAuthFailures",
        "SmcTargetNotFound",
        "EventsRejected",
        "SmcRetryableFailures",
        "SmcKeyDaysLeft",
        "QueuedEventAgePercent",
    }
    assert set(watched) <= emitted
    assert watched["SmcAuthFailures"]["Threshold"] == 1
    assert watched["SmcAuthFailures"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert watched["EventsRejected"]["Threshold"] == {"Ref": "EventsRejectedAlarmThreshold"}


def test_key_expiry_alarm_fires_below_14_days_left(template: dict[str, Any]) -> None:
    from handler.key_expiry import WARN_DAYS

    alarm = properties(template, "SmcKeyExpiryAlarm")
    assert alarm["MetricName"] == "SmcKeyDaysLeft"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (14, "LessThanThreshold")
    assert alarm["Statistic"] == "Minimum"
    assert alarm["Threshold"] < WARN_DAYS, "check warns before the alarm fires"
    # Emitted once per cold start: the period must be long enough to hold a data point.
    assert alarm["Period"] * alarm["EvaluationPeriods"] >= 6 * 3600


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["WebhookUrl"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/segment"
    }
    assert outputs["SecretArn"]["Value"] == {
        "Fn::If": ["CreateSecret", {"Ref": "WebhookSecret"}, {"Ref": "ExistingSecretArn"}]
    }
    assert outputs["IdempotencyTableName"]["Value"] == {"Ref": "IdempotencyTable"}


# --- dashboard -----------------------------------------------------------------------------


def _resolve(node: Any, queued: bool) -> Any:
    """The value CloudFormation gives `node` (Join, If, Sub), with resource names as `<Name>`."""
    if isinstance(node, list):
        return [_resolve(item, queued) for item in node]
    if not isinstance(node, dict):
        return node
    if "Fn::Join" in node:
        separator, parts = node["Fn::Join"]
        return separator.join(_resolve(part, queued) for part in parts)
    if "Fn::If" in node:
        assert node["Fn::If"][0] == "IsQueued"
        return _resolve(node["Fn::If"][1 if queued else 2], queued)
    if "Fn::Sub" in node:
        return re.sub(r"\$\{([A-Za-z:.]+)\}", lambda m: f"<{m.group(1)}>", node["Fn::Sub"])
    return {key: _resolve(value, queued) for key, value in node.items()}


def _dashboard(template: dict[str, Any], queued: bool) -> dict[str, list[list[Any]]]:
    """Widget title -> its metric lines, as the deployed dashboard has them."""
    body = json.loads(_resolve(properties(template, "Dashboard")["DashboardBody"], queued))
    return {w["properties"]["title"]: w["properties"]["metrics"] for w in body["widgets"]}


def test_dashboard_is_rendered_from_the_panels() -> None:
    from scripts.dashboard import render

    assert render() in (ROOT / "template.yaml").read_text(), "run `make dashboard`"


def test_dashboard_shows_outcomes_smc_latency_and_function_health_in_both_modes(
    template: dict[str, Any],
) -> None:
    from handler.outcomes import OUTCOMES

    widgets = _dashboard(template, queued=False)
    shown = {(line[1], line[-1]["stat"]) for lines in widgets.values() for line in lines}
    assert {(f"Events{o.capitalize()}", "Sum") for o in OUTCOMES} <= shown
    assert {(f"SmcResponses{c}", "Sum") for c in ("2xx", "4xx", "429", "5xx")} <= shown
    assert {("SmcLatency", "p50"), ("SmcLatency", "p99"), ("HandlerLatency", "p99")} <= shown
    health = widgets["WebhookFunction errors and throttles"]
    assert [line[:4] for line in health] == [
        ["AWS/Lambda", name, "FunctionName", "<WebhookFunction>"] for name in ("Errors", "Throttles")
    ]
    own = [line for lines in widgets.values() for line in lines if line[0] == "SegmentSmcDestination"]
    assert {tuple(line[2:4]) for line in own} == {("service", POWERTOOLS_VARS["POWERTOOLS_SERVICE_NAME"])}
    assert POWERTOOLS_VARS["POWERTOOLS_METRICS_NAMESPACE"] == "SegmentSmcDestination"
    assert "Delivery queue" not in widgets


def test_dashboard_adds_queue_and_delivery_widgets_in_queued_mode(template: dict[str, Any]) -> None:
    sync, queued = _dashboard(template, queued=False), _dashboard(template, queued=True)
    added = {title: lines for title, lines in queued.items() if title not in sync}
    assert set(added) == {
        "DeliveryFunction errors and throttles",
        "Delivery queue",
        "Dead-letter queue depth",
        "Queued retries",  # the consumer's own metrics: only it emits them
    }
    lines = {(line[1], line[3]) for lines in added.values() for line in lines}
    assert {
        ("Errors", "<DeliveryFunction>"),
        ("Throttles", "<DeliveryFunction>"),
        ("ApproximateNumberOfMessagesVisible", "<DeliveryQueue.QueueName>"),
        ("ApproximateAgeOfOldestMessage", "<DeliveryQueue.QueueName>"),
        ("ApproximateNumberOfMessagesVisible", "<DeadLetterQueue.QueueName>"),
    } <= lines
    # Exactly the resources that exist only in queued mode are behind IsQueued.
    conditional = {name for name, r in template["Resources"].items() if r.get("Condition") == "IsQueued"}
    for title, lines in queued.items():
        names = {re.sub(r"[<>]|\..*", "", line[3]) for line in lines if line[0].startswith("AWS/")}
        if names:
            assert (title in added) == bool(names & conditional), title


def test_status_reads_resources_the_template_has(template: dict[str, Any]) -> None:
    from handler.cli.panels import PANELS
    from handler.cli.status import LOG_GROUPS

    read = {m.resource.logical_id for p in PANELS for m in p.metrics if m.resource} | set(LOG_GROUPS)
    assert read | {"Dashboard"} <= set(template["Resources"])


def test_dashboard_is_named_after_the_stack_and_its_url_is_an_output(template: dict[str, Any]) -> None:
    from handler.cli.panels import DASHBOARD_URL

    assert properties(template, "Dashboard")["DashboardName"] == {"Ref": "AWS::StackName"}
    url = template["Outputs"]["DashboardUrl"]["Value"]
    assert url == {"Fn::Sub": DASHBOARD_URL.format(region="${AWS::Region}", name="${Dashboard}")}


# --- samconfig.toml ------------------------------------------------------------------------


def _overrides(raw: list[str]) -> dict[str, str]:
    pairs = dict(item.split("=", 1) for item in raw)
    return {
        key: value[1:-1] if value.startswith('"') and value.endswith('"') else value
        for key, value in pairs.items()
    }


def _satisfies(param: dict[str, Any], value: str) -> bool:
    if "AllowedValues" in param and value not in [str(v) for v in param["AllowedValues"]]:
        return False
    if "AllowedPattern" in param and not re.fullmatch(param["AllowedPattern"], value):
        return False
    if param["Type"] == "Number":
        number = float(value)
        return param.get("MinValue", number) <= number <= param.get("MaxValue", number)
    return True


@pytest.mark.parametrize("env", ["default", "prod"])
def test_samconfig_shows_every_setting_with_valid_values(template: dict[str, Any], env: str) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    assert config[env]["global"]["parameters"]["stack_name"]
    assert config[env]["build"]["parameters"]["build_in_source"] is True
    deploy = config[env]["deploy"]["parameters"]
    assert deploy["resolve_s3"] is True
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True
    overrides = _overrides(deploy["parameter_overrides"])
    assert set(overrides) == set(template["Parameters"]), "every parameter is shown"
    for name, value in overrides.items():
        assert _satisfies(template["Parameters"][name], value), f"{env}: {name}={value!r}"
    # The function name is "<stack>-webhook": at most 64 characters.
    assert len(config[env]["global"]["parameters"]["stack_name"]) <= 56


def test_samconfig_prod_differs_where_stages_should() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    default = _overrides(config["default"]["deploy"]["parameters"]["parameter_overrides"])
    prod = _overrides(config["prod"]["deploy"]["parameters"]["parameter_overrides"])
    assert (
        config["prod"]["global"]["parameters"]["stack_name"]
        != config["default"]["global"]["parameters"]["stack_name"]
    )
    assert prod["SmcAllowedEvents"] not in ("", "*")
    assert int(prod["ApiThrottlingRateLimit"]) < int(default["ApiThrottlingRateLimit"])
    assert prod["AlarmTopicArn"] and not default["AlarmTopicArn"]
