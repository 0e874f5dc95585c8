"""Check what `sam build` produced for WebhookFunction before it is deployed.

Usage: python scripts/check_build.py .aws-sam/build/WebhookFunction [--python python3.13]

Reports the artifact's size against Lambda's limits, then checks that it is what the arm64
python3.13 runtime needs: the runtime's own SDK left out, native extensions built for aarch64,
bytecode precompiled (the code folder is read-only in Lambda, so nothing can be cached there
at run time) and `handler.app.lambda_handler` importable with nothing but the artifact, the
standard library and what the runtime provides (boto3 and its dependencies).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNZIPPED_LIMIT_MB = 250  # Lambda: function code + layers, unzipped
ZIPPED_LIMIT_MB = 50  # Lambda: direct .zip upload (sam deploy goes through S3, but stay far below)
# What the python3.13 runtime ships: the artifact must not need more from outside.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
MUST_NOT_SHIP = ("boto3", "botocore", "s3transfer")
ELF_MACHINE_AARCH64 = 183
PYC_FLAG_HASH_BASED = 0b01
PYC_FLAG_CHECK_SOURCE = 0b10

IMPORT_PROBE = """
import sys, time
sys.path[:0] = [{build!r}, {runtime!r}]
start = time.perf_counter()
import handler.app
elapsed = (time.perf_counter() - start) * 1000
assert callable(getattr(handler.app, "lambda_handler", None)), "handler.app.lambda_handler is not callable"
allowed = ({build!r}, {runtime!r}, sys.base_prefix)
strays = sorted(
    name for name, module in sys.modules.items()
    if getattr(module, "__file__", None) and not module.__file__.startswith(allowed)
)
assert not strays, f"modules loaded from outside the artifact/runtime: {{strays}}"
print(f"{{elapsed:.1f}}")
"""


def fail(message: str) -> None:
    print(f"FAIL: {message}")
    sys.exit(1)


def artifact_size(build: Path) -> tuple[list[Path], int, int]:
    """The artifact's files, unzipped bytes and bytes once zipped as Lambda receives it."""
    files = [p for p in build.rglob("*") if p.is_file()]
    unzipped = sum(p.stat().st_size for p in files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(build))
    return files, unzipped, buffer.tell()


def report_size(build: Path) -> None:
    files, unzipped, zipped = artifact_size(build)
    print(
        f"size: {unzipped / 1e6:.1f} MB unzipped (limit {UNZIPPED_LIMIT_MB}), "
        f"{zipped / 1e6:.1f} MB zipped (limit {ZIPPED_LIMIT_MB}), {len(files)} files"
    )
    if unzipped > UNZIPPED_LIMIT_MB * 1e6 or zipped > ZIPPED_LIMIT_MB * 1e6:
        fail("artifact exceeds Lambda's size limits")


def check_contents(build: Path) -> None:
    shipped = [name for name in MUST_NOT_SHIP if (build / name).exists()]
    if shipped:
        fail(f"runtime-provided packages shipped: {shipped}")
    for unwanted in ("tests", "conftest.py"):
        found = [str(p.relative_to(build)) for p in (build / "handler").rglob(unwanted)]
        if found:
            fail(f"test files shipped: {found}")
    for so in build.rglob("*.so"):
        if ".cpython-313-" not in so.name and ".abi3." not in so.name:
            fail(f"native extension not for CPython 3.13: {so.relative_to(build)}")
        header = so.read_bytes()[:20]
        if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != ELF_MACHINE_AARCH64:
            fail(f"not an aarch64 ELF file: {so.relative_to(build)}")
    missing = []
    for source in build.rglob("*.py"):
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not pyc.exists():
            missing.append(str(source.relative_to(build)))
            continue
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        if flags != PYC_FLAG_HASH_BASED:  # unchecked-hash: hash-based, source never re-checked
            fail(f"bytecode is not unchecked-hash: {pyc.relative_to(build)}")
    if missing:
        fail(f"{len(missing)} modules without precompiled bytecode, e.g. {missing[:3]}")
    print("contents: no runtime SDK, aarch64 extensions only, every module precompiled (unchecked-hash)")


def runtime_stand_in(target: Path) -> None:
    """Link the runtime's packages (from this virtualenv) into `target`, like /var/runtime."""
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            fail(f"{name} is not installed in {sys.prefix} (run `make venv`)")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (target / source.name).symlink_to(source)


def lambda_environment() -> dict[str, str]:
    """The function's environment as `sam local invoke` would set it (events/env.json)."""
    env_file = json.loads((ROOT / "events" / "env.json").read_text())
    env = {key: str(value) for key, value in env_file["WebhookFunction"].items()}
    env.update(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",  # never used: the probe makes no AWS call
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LAMBDA_FUNCTION_NAME": "segment-smc-destination-webhook",
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
        }
    )
    return env


def check_import(build: Path, python: str) -> None:
    if not (build / "handler" / "app.py").exists():
        print("SKIP import check: handler/app.py is not in the artifact yet")
        return
    with tempfile.TemporaryDirectory(prefix="lambda-runtime-") as runtime:
        runtime_stand_in(Path(runtime))
        probe = IMPORT_PROBE.format(build=str(build.resolve()), runtime=runtime)
        timings = []
        for _ in range(3):
            # -I: no PYTHONPATH, user site or cwd; -S: not even the interpreter's site-packages.
            result = subprocess.run(  # noqa: S603 - our own interpreter and probe
                [python, "-I", "-S", "-c", probe],
                env=lambda_environment(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode != 0:
                fail(f"handler.app does not import from the artifact:\n{result.stderr.strip()}")
            timings.append(float(result.stdout.strip().splitlines()[-1]))
    print(
        f"import: handler.app.lambda_handler imports with only the artifact + runtime packages "
        f"(median {statistics.median(timings):.0f} ms on this machine)"
    )
    if platform.machine() not in ("aarch64", "arm64"):
        print(f"note: on {platform.machine()} the aarch64 extensions were skipped (pure-Python fallbacks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the function's build folder")
    parser.add_argument("--python", default="python3.13", help="a python3.13 interpreter")
    args = parser.parse_args()
    if not args.build.is_dir():
        fail(f"{args.build} does not exist: run `make sam-build`")
    report_size(args.build)
    check_contents(args.build)
    check_import(args.build, args.python)
    print("build check passed")


if __name__ == "__main__":
    main()
