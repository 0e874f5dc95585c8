"""Size of the Lambda artifact: `.aws-sam/build/WebhookFunction` when `make sam-build` made one,
otherwise the same recipe (Makefile `build-WebhookFunction`) reproduced into a temporary folder."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.env import ROOT
from devstack.artifact import make
from scripts.check_build import artifact_size

SAM_BUILD = ROOT / ".aws-sam" / "build" / "WebhookFunction"
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")  # shipped by the python3.13 runtime


def build(target: Path) -> None:
    """The Makefile's own `build-WebhookFunction` recipe (what `sam build` runs), into `target`."""
    make("build-WebhookFunction", ARTIFACTS_DIR=str(target))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale_modules(artifact: Path) -> list[str]:
    """Handler modules the artifact ships in another version than the working tree's (modules it
    leaves out on purpose, like the operator CLI, are not listed)."""
    stale = []
    for source in (ROOT / "handler").rglob("*.py"):
        if "__pycache__" in source.parts:
            continue
        shipped = artifact / "handler" / source.relative_to(ROOT / "handler")
        if shipped.exists() and _digest(shipped) != _digest(source):
            stale.append(str(source.relative_to(ROOT)))
    return sorted(stale)


def measure_dir(artifact: Path) -> dict[str, Any]:
    files, unzipped, zipped = artifact_size(artifact)
    top: dict[str, int] = {}
    for path in files:
        name = path.relative_to(artifact).parts[0].split("-")[0].removesuffix(".py")
        top[name] = top.get(name, 0) + path.stat().st_size
    largest = sorted(top.items(), key=lambda item: -item[1])[:8]
    return {
        "package_mb": round(unzipped / 1e6, 2),
        "zipped_mb": round(zipped / 1e6, 2),
        "files": len(files),
        "largest_mb": {name: round(size / 1e6, 2) for name, size in largest},
        "runtime_packages_shipped": [n for n in RUNTIME_PROVIDED if (artifact / n).exists()],
    }


def measure(allow_build: bool = True) -> dict[str, Any]:
    if SAM_BUILD.is_dir():
        result = measure_dir(SAM_BUILD)
        result["source"] = str(SAM_BUILD.relative_to(ROOT))
        result["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(SAM_BUILD.stat().st_mtime))
        result["stale_handler_modules"] = stale_modules(SAM_BUILD)
        return result
    if not allow_build:
        return {"source": "none (no sam build, build skipped)"}
    with tempfile.TemporaryDirectory(prefix="artifact-") as tmp:
        build(Path(tmp))
        result = measure_dir(Path(tmp))
    result["source"] = "bench rebuild (no .aws-sam/build; same recipe as `make sam-build`)"
    return result
