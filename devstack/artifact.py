"""The built artifact, run as Lambda runs it: a clean python3.13 process under awslambdaric.

`ArtifactFunction` is one execution environment. Its process is `python3.13 -S -s -P -m awslambdaric
handler.app.lambda_handler` with a `sys.path` of exactly the artifact (LAMBDA_TASK_ROOT, also the
working directory, as in Lambda) and the runtime's own packages (`make lambda-runtime`: the AWS SDK
and awslambdaric, as /var/runtime holds them) before the standard library: no site-packages, no
virtualenv, no repository. Its environment is what Lambda sets plus the function's settings, and
nothing of the caller's. It talks to `devstack.runtime_api` on a loopback port, so an answer the
runtime cannot serialise, a module missing from the artifact (even one imported only on some
code path) or code that needs the repository fails here as it would in Lambda.

Like Lambda, the environment starts on the first invocation, is started again after its process
died, and is killed when an invocation outlives the function's timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from devstack.front import FUNCTION_ARN, FUNCTION_MEMORY_MB, FUNCTION_NAME, FUNCTION_TIMEOUT_MS
from devstack.runtime_api import Result, RuntimeApi, error_result

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = ROOT / ".lambda-runtime"  # Makefile: LAMBDA_RUNTIME_DIR
HANDLER = "handler.app.lambda_handler"  # template.yaml: Handler
INIT_TIMEOUT_MS = 10_000  # Lambda's limit for the init phase of an on-demand function
WATCH_S = 0.02  # how often a waiting invocation looks at its process


def make(target: str, **variables: str) -> None:
    """Run one of the Makefile's targets (the project's own recipes), from the repository root."""
    command = ["make", "--no-print-directory", target, *(f"{k}={v}" for k, v in variables.items())]
    subprocess.run(command, cwd=ROOT, check=True, timeout=600, stdout=subprocess.DEVNULL)  # noqa: S603


def build_artifact(target: Path) -> Path:
    """`sam build`'s recipe, for this machine's architecture, into `target` (emptied first)."""
    make("lambda-artifact", LAMBDA_ARTIFACT_DIR=str(target))
    return target


def install_runtime() -> Path:
    """The runtime's own packages (once per lock change); their folder."""
    make("lambda-runtime")
    return RUNTIME_DIR


def base_python() -> str:
    """The interpreter this virtualenv was made from (the Makefile's python3.13), venv left out."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return str(Path(sys.base_prefix) / "bin" / f"python{version}")


class FunctionError(Exception):
    """The invocation ended in an error Lambda reports (API Gateway answers 500 for it)."""

    def __init__(self, result: Result) -> None:
        super().__init__(f"{result.error_type}: {result.error_message()}")
        self.result = result


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """The function's configuration (template.yaml) as Lambda applies it."""

    name: str = FUNCTION_NAME
    arn: str = FUNCTION_ARN
    memory_mb: int = FUNCTION_MEMORY_MB
    timeout_ms: int = FUNCTION_TIMEOUT_MS
    region: str = "us-east-1"
    handler: str = HANDLER


def lambda_environment(
    config: FunctionConfig, task_root: Path, runtime_dir: Path, api: str
) -> dict[str, str]:
    """The variables Lambda itself sets in a python3.13 execution environment."""
    return {
        "AWS_LAMBDA_RUNTIME_API": api,
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": config.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]local",
        "AWS_REGION": config.region,
        "AWS_DEFAULT_REGION": config.region,
        "PYTHONPATH": os.pathsep.join((str(task_root), str(runtime_dir))),  # Lambda's order: the task first
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        # Lambda has no AWS config files: the developer's ~/.aws must not reach the function.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # The task folder is read-only in Lambda: nothing may be written into the artifact here either.
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class ArtifactFunction:
    """One execution environment of the artifact in `task_root`; `invoke` one event at a time."""

    def __init__(
        self,
        task_root: Path,
        settings: dict[str, str],
        log: IO[Any],
        *,
        runtime_dir: Path = RUNTIME_DIR,
        config: FunctionConfig | None = None,
        python: str | None = None,
    ) -> None:
        self.task_root = task_root.resolve()
        self.settings = settings  # the function's own variables and AWS credentials/endpoint
        self.log = log  # the process's stdout and stderr: what CloudWatch would get
        self.runtime_dir = runtime_dir.resolve()
        self.config = config or FunctionConfig()
        self.python = python or base_python()
        self.starts = 0  # execution environments started (cold starts)
        self._api = RuntimeApi(self.config.arn)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Serve the Runtime API; the process itself starts with the first invocation (a cold start)."""
        self._api.start()

    def __enter__(self) -> ArtifactFunction:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _start_process(self) -> subprocess.Popen[bytes]:
        self._api.init_error = None
        env = {
            **self.settings,
            **lambda_environment(self.config, self.task_root, self.runtime_dir, self._api.address),
        }
        self.starts += 1
        # -S: no site-packages, -s: no user site, -P: no working directory on sys.path; the clean
        # environment leaves PYTHONPATH as the only path entries besides the standard library.
        return subprocess.Popen(  # noqa: S603 - our interpreter, the runtime's own entry point
            [self.python, "-S", "-s", "-P", "-m", "awslambdaric", self.config.handler],
            cwd=self.task_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def invoke(self, event: Any) -> Result:
        """Send `event` (JSON-serialisable) through the runtime; how the invocation ended."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = self._start_process()
            invocation = self._api.submit(json.dumps(event).encode(), self.config.timeout_ms)
            limit = time.monotonic() + (INIT_TIMEOUT_MS + self.config.timeout_ms) / 1000
            while invocation.result is None:
                if invocation.done.wait(WATCH_S):
                    continue
                code = self._process.poll()
                if code is not None:
                    invocation.settle(self._exit_result(invocation.request_id, code))
                elif invocation.expired() or time.monotonic() > limit:
                    self._kill()
                    seconds = self.config.timeout_ms / 1000
                    message = f"Task timed out after {seconds:.2f} seconds"
                    invocation.settle(error_result(invocation.request_id, "Sandbox.Timedout", message))
            self._api.discard(invocation)
            return invocation.result

    def call(self, event: dict[str, Any], context: object = None) -> Any:
        """`invoke`, answer decoded as API Gateway reads it; an error raises `FunctionError`.

        The signature of a handler, so the local front can call it in place of the in-process one
        (`context` is Lambda's own here: the runtime builds it).
        """
        result = self.invoke(event)
        if not result.ok:
            raise FunctionError(result)
        return json.loads(result.payload)

    def _exit_result(self, request_id: str, code: int) -> Result:
        """The error for an invocation whose process ended: the init error it posted, if any."""
        init_error = self._api.init_error
        if init_error is not None:
            return Result(request_id, init_error.payload, init_error.error_type)
        return error_result(request_id, "Runtime.ExitError", f"Runtime exited with error: exit status {code}")

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def stop(self) -> None:
        """End the process and the Runtime API; safe to call twice."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._api.close()
