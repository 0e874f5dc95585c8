"""Cold start: import the handler and serve the first request in a fresh Python process, next to
reference processes that import only what the design requires.

Every probe reads its API Gateway event from a file *before* its clock starts (the Lambda runtime
hands the handler a parsed event too), then times:

* product:        `import handler.app` + the first `lambda_handler` call (1 signed track event).
* ref_imports:    `import json, requests, boto3` + `from aws_lambda_powertools import Logger`.
* ref_request:    the same imports + the first request's unavoidable I/O done directly with them:
                  read the secret, open the idempotency record (conditional PutItem), post the
                  row to SMC, close the record (UpdateItem), log one line.

Variants: bytecode as shipped (the venv and `sam build` precompile .pyc) and no bytecode at all
(`-B` + an empty PYTHONPYCACHEPREFIX: every module, the standard library's too, compiled from
source: an upper bound for a package shipped without .pyc); tracing on (the X-Ray SDK imported and
`requests`/`botocore` patched, as with `Tracing: Active` in Lambda) vs off.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import env as benv
from bench.workload import request

_PREAMBLE = """
import json, sys
event = json.load(open(sys.argv[1]))
class Ctx:
    function_name = "segment-smc-destination-webhook"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:segment-smc-destination"
    aws_request_id = "cold-start-probe"
    function_version = "$LATEST"
    def get_remaining_time_in_millis(self):
        return 9000
import time
t0 = time.perf_counter()
"""

_EPILOGUE = """
t2 = time.perf_counter()
assert status == 200, status
with open(sys.argv[2], "w") as out:
    json.dump({"import_ms": (t1 - t0) * 1000, "request_ms": (t2 - t1) * 1000, "total_ms": (t2 - t0) * 1000,
               "modules": len(sys.modules)}, out)
"""

PROBES: dict[str, str] = {
    "product": """
import handler.app
t1 = time.perf_counter()
status = handler.app.lambda_handler(event, Ctx())["statusCode"]
""",
    "ref_imports": """
import json, requests, boto3
from aws_lambda_powertools import Logger
t1 = time.perf_counter()
status = 200
""",
    "ref_request": """
import json, os, requests, boto3
from aws_lambda_powertools import Logger
t1 = time.perf_counter()
logger = Logger()
secret = json.loads(boto3.client("secretsmanager").get_secret_value(
    SecretId=os.environ["SMC_SECRET_ID"])["SecretString"])
dynamodb = boto3.client("dynamodb")
key = {"id": {"S": event["requestContext"]["requestId"]}}
dynamodb.put_item(TableName=os.environ["IDEMPOTENCY_TABLE"], Item={**key, "status": {"S": "INPROGRESS"}},
                  ConditionExpression="attribute_not_exists(id)")
raw = json.loads(event["body"])
row = [raw["messageId"], raw["type"], raw.get("event"), raw.get("userId"), raw.get("anonymousId"),
       None, raw["timestamp"], raw["receivedAt"], json.dumps(raw.get("properties")),
       json.dumps(raw.get("context"))]
fields = ("MESSAGE_ID,EVENT_TYPE,EVENT_NAME,USER_ID,ANONYMOUS_ID,PREVIOUS_ID,EVENT_TIMESTAMP,"
          "RECEIVED_AT,PROPERTIES,CONTEXT")
url = os.environ["SMC_ADMIN_URL"] + "/Portal/Api/organizations/demo/lists/segment_events/data/load"
response = requests.post(url, params={"keyFields": "MESSAGE_ID", "fields": fields, "mode": "Sync"},
                         data=json.dumps([row]), timeout=5,
                         headers={"X-ApiKey": secret["apiKey"] + ":" + secret["apiSecret"],
                                  "Content-Type": "application/json"})
dynamodb.update_item(TableName=os.environ["IDEMPOTENCY_TABLE"], Key=key, UpdateExpression="SET #s = :s",
                     ExpressionAttributeNames={"#s": "status"},
                     ExpressionAttributeValues={":s": {"S": "COMPLETED"}})
logger.info("request settled", extra={"status": response.status_code})
status = response.status_code
""",
}


def probe_source(name: str) -> str:
    return _PREAMBLE + PROBES[name] + _EPILOGUE


def run_probe(
    stack: benv.Stack, name: str, work: Path, *, bytecode: bool = True, tracing: bool = False
) -> dict[str, float]:
    """One fresh process; returns its timings (ms) plus the parent's view of the process's life."""
    event_file = work / f"event-{time.monotonic_ns()}.json"
    event_file.write_text(json.dumps(request(1)))
    result_file = work / f"result-{time.monotonic_ns()}.json"
    extra: dict[str, str] = {}
    if tracing:
        # As in Lambda with `Tracing: Active` (LAMBDA_TASK_ROOT is always set): the Tracer is on.
        extra.update(
            POWERTOOLS_TRACE_DISABLED="false",
            _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
    command = [sys.executable]
    if not bytecode:
        extra["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="pycache-", dir=work)
        command.append("-B")
    command += ["-c", probe_source(name), str(event_file), str(result_file)]
    started = time.perf_counter()
    subprocess.run(
        command,
        env=stack.env(**extra),
        cwd=benv.OUT,  # not the repository: `handler` must come from PYTHONPATH
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    wall_ms = (time.perf_counter() - started) * 1000
    timings: dict[str, float] = json.loads(result_file.read_text())
    timings["process_wall_ms"] = wall_ms
    return timings


def measure(stack: benv.Stack, runs: int = 11, variant_runs: int = 5) -> dict[str, Any]:
    """Medians over interleaved runs (product and references alternate, so drift hits all alike)."""
    benv.OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coldstart-", dir=benv.OUT) as tmp:
        work = Path(tmp)
        raw: dict[str, list[dict[str, float]]] = {}
        plan: list[tuple[str, str, dict[str, bool]]] = []
        for _ in range(runs):
            plan += [(name, name, {}) for name in ("product", "ref_imports", "ref_request")]
        for _ in range(variant_runs):
            plan.append(("product_no_pyc", "product", {"bytecode": False}))
            plan.append(("ref_request_no_pyc", "ref_request", {"bytecode": False}))
            plan.append(("product_tracing", "product", {"tracing": True}))
        for label, probe, options in plan:
            raw.setdefault(label, []).append(run_probe(stack, probe, work, **options))
    medians = {
        label: {key: round(statistics.median(r[key] for r in runs_), 1) for key in runs_[0]}
        for label, runs_ in raw.items()
    }
    return {"runs": runs, "variant_runs": variant_runs, "median": medians, "raw": raw}
