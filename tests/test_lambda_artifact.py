"""The built artifact, run as Lambda runs it (`devstack.artifact`, `make lambda-test`): a clean python3.13
process with only the runtime's packages and the artifact on its path, the handler under the real
runtime interface client (awslambdaric) behind the harness's Runtime API, AWS through moto over
HTTP and SMC through the sandbox. Then the harness itself: what it must catch that an import
check cannot, and how it treats an environment that dies."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from devstack.artifact import ArtifactFunction, FunctionConfig
from devstack.examples import example_env
from devstack.stack import aws_env, function_settings
from tests.cases import check_every_case, decode_answer, use_example_credentials

ROOT = Path(__file__).resolve().parent.parent

# A handler that reports where it runs, and handlers that answer when called in-process from the
# repository but fail in Lambda.
THROWAWAY = """
import datetime
import os
import pathlib
import sys
import time


def where_am_i(event, context):
    return {"path": sys.path, "cwd": os.getcwd(), "env": sorted(os.environ), "prefix": sys.prefix}


def unserialisable(event, context):
    return {"statusCode": 200, "body": "{}", "at": datetime.datetime(2026, 1, 1)}


def lazy_import(event, context):
    import sandbox  # a package of the repository, in no artifact

    return {"statusCode": 200, "body": sandbox.__name__}


def needs_repo_root(event, context):
    return {"statusCode": 200, "body": pathlib.Path("events/env.json").read_text()}


def dies_when_asked(event, context):
    if event.get("die"):
        os._exit(3)
    return event


def hangs_when_asked(event, context):
    if event.get("hang"):
        time.sleep(60)
    return event
"""


@pytest.fixture
def function_log(tmp_path: Path) -> Iterator[IO[str]]:
    """What the function's process prints (CloudWatch's share); shown when the test fails."""
    path = tmp_path / "function.log"
    with path.open("w", encoding="utf-8") as log:
        yield log
    print(path.read_text(encoding="utf-8")[-20_000:])


@pytest.fixture
def throwaway(tmp_path: Path) -> Path:
    """A task folder with only the throwaway module."""
    task = tmp_path / "task"
    task.mkdir()
    (task / "throwaway.py").write_text(THROWAWAY, encoding="utf-8")
    return task


def throwaway_function(
    task: Path, handler: str, log: IO[str], runtime: Path, **config: int
) -> ArtifactFunction:
    return ArtifactFunction(
        task, {}, log, runtime_dir=runtime, config=FunctionConfig(handler=f"throwaway.{handler}", **config)
    )


def deployed(
    artifact: Path, moto_endpoint: str, settings: dict[str, str], log: IO[str], runtime: Path, **config: Any
) -> ArtifactFunction:
    """The artifact as a function of the stack: its settings, AWS through moto, the test's region."""
    function_config = FunctionConfig(region=os.environ["AWS_REGION"], **config)
    environment = {**aws_env(moto_endpoint), **settings}
    return ArtifactFunction(artifact, environment, log, runtime_dir=runtime, config=function_config)


def test_every_event_file_gets_its_documented_answer_when_the_built_artifact_runs_under_awslambdaric(
    stack, moto_endpoint, lambda_artifact, lambda_runtime, function_log
):
    # Given the deployed function's settings (events/env.json) pointed at moto and the seeded sandbox
    use_example_credentials(stack)
    settings = function_settings(
        example_env(),
        stack.sandbox.base_url,
        stack.secret_id,
        (stack.table, stack.state_table),
        loopback_smc=True,
    )
    # When every case goes through the artifact under the runtime client
    with deployed(lambda_artifact, moto_endpoint, settings, function_log, lambda_runtime) as function:
        # Then each answer, outcome count and SMC effect is the one cases.json documents
        check_every_case(stack, lambda event: decode_answer(function.call(event)))
    # And one execution environment served them all, warm after the first, as one Lambda instance
    assert function.starts == 1


def test_the_function_sees_only_the_artifact_the_runtime_and_the_standard_library_when_it_runs(
    throwaway, lambda_runtime, function_log
):
    with throwaway_function(throwaway, "where_am_i", function_log, lambda_runtime) as function:
        seen = function.call({})
    # The task folder, then the runtime's packages, then the interpreter's standard library only
    assert seen["path"][:2] == [str(throwaway), str(lambda_runtime)]
    assert all(
        entry.startswith(sys.base_prefix) and "site-packages" not in entry for entry in seen["path"][2:]
    )
    assert seen["prefix"] == sys.base_prefix  # not this virtualenv
    # The working directory is the task folder (LAMBDA_TASK_ROOT), and nothing of the caller's
    # environment came along
    assert seen["cwd"] == str(throwaway)
    assert (
        "LAMBDA_TASK_ROOT" in seen["env"] and "VIRTUAL_ENV" not in seen["env"] and "HOME" not in seen["env"]
    )


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("unserialisable", "Runtime.MarshalError"),  # an answer the runtime cannot serialise
        ("lazy_import", "ModuleNotFoundError"),  # a module missing from the artifact, imported late
        ("needs_repo_root", "FileNotFoundError"),  # code that reads the repository
    ],
)
def test_lambda_reports_an_error_when_a_handler_that_works_in_process_runs_from_its_artifact(
    handler, error_type, throwaway, lambda_runtime, function_log, monkeypatch
):
    # Given a handler that answers when called in-process from the repository root
    monkeypatch.chdir(ROOT)
    spec = importlib.util.spec_from_file_location("throwaway", throwaway / "throwaway.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert getattr(module, handler)({}, None)["statusCode"] == 200
    # When Lambda runs it from its artifact
    with throwaway_function(throwaway, handler, function_log, lambda_runtime) as function:
        result = function.invoke({})
    # Then the invocation fails as it would there
    assert (result.ok, result.error_type) == (False, error_type), result.payload


def test_the_invocation_gets_the_init_error_when_the_handler_module_is_missing_from_the_artifact(
    tmp_path, lambda_runtime, function_log
):
    empty = tmp_path / "empty"
    empty.mkdir()
    with ArtifactFunction(empty, {}, function_log, runtime_dir=lambda_runtime) as function:
        first, second = function.invoke({}), function.invoke({})
    assert first.error_type == "Runtime.ImportModuleError" and "handler.app" in first.error_message()
    # Lambda tries a new environment for each later invocation, and fails the same way
    assert second.error_type == "Runtime.ImportModuleError" and function.starts == 2


@pytest.mark.parametrize(
    ("handler", "trigger", "error_type"),
    [("dies_when_asked", "die", "Runtime.ExitError"), ("hangs_when_asked", "hang", "Sandbox.Timedout")],
)
def test_the_next_invocation_gets_a_new_environment_when_the_process_dies_or_times_out(
    handler, trigger, error_type, throwaway, lambda_runtime, function_log
):
    with throwaway_function(throwaway, handler, function_log, lambda_runtime, timeout_ms=500) as function:
        failed = function.invoke({trigger: True})
        answered = function.invoke({"after": trigger})
    assert failed.error_type == error_type, failed.payload
    assert answered.ok and answered.payload == b'{"after": "' + trigger.encode() + b'"}'
    assert function.starts == 2


def test_the_queue_consumer_delivers_retries_and_dead_letters_when_the_built_artifact_runs_it(
    stack, moto_endpoint, lambda_artifact, lambda_runtime, function_log
):
    """DeliveryFunction's handler from the same artifact: its code paths (delivery, a retry sent
    back as a delayed message, a dead letter) import modules the webhook's never touch."""
    import json

    import boto3

    from tests import support
    from tests.support import api_event, invoke, sqs_event

    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="artifact-dlq")["QueueUrl"]
    queue_url = sqs.create_queue(QueueName="artifact-delivery")["QueueUrl"]
    queued = {"DELIVERY_MODE": "queued", "DELIVERY_QUEUE_URL": queue_url, "DEAD_LETTER_QUEUE_URL": dlq_url}
    # Given a message the webhook (in-process) enqueued: one event to deliver, one SMC refuses for
    # good, one whose segment SMC lacks
    support.narrow_event_name(stack.sandbox)
    good, bad = support.track(), support.track("x" * support.TOO_LONG_FOR_NARROW)
    waiting = support.group("ADD", segment="no_such_segment")
    stack.set_env(**queued)
    invoke(api_event([good, bad, waiting], signature=False, bearer=support.BEARER_TOKEN))
    messages = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"], VisibilityTimeout=60)[
        "Messages"
    ]
    # When the artifact's consumer runs the SQS batch under the runtime client
    from devstack.stack import POWERTOOLS_ENV
    from handler.settings import ENV_VARS

    settings = {name: os.environ[name] for name in ENV_VARS if os.environ.get(name)}  # the stack's
    settings.update(POWERTOOLS_ENV)
    consumer = {"handler": "handler.consumer.lambda_handler", "timeout_ms": 60_000}  # template.yaml
    with deployed(
        lambda_artifact, moto_endpoint, settings, function_log, lambda_runtime, **consumer
    ) as function:
        answer = function.call(sqs_event(messages))
    # Then the message is done, the good row is in SMC, the refused one is a dead letter and the
    # waiting one a new delayed message
    assert answer == {"batchItemFailures": []}
    assert [row["MESSAGE_ID"] for row in stack.rows()] == [good["messageId"]]
    (letter,) = sqs.receive_message(QueueUrl=dlq_url, VisibilityTimeout=0)["Messages"]
    assert json.loads(letter["Body"])["events"][0]["messageId"] == bad["messageId"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
