"""The example values the local stack shares with `events/`: secret, settings and names.

They come from `events/examples.json` (the example secret) and `events/env.json` (the function's
example settings) when those files exist, so the stack, the event files and their signatures
always agree; the constants below are the fallback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

FALLBACK_SECRET: dict[str, str] = {
    "apiKey": "demo-key",
    "apiSecret": "demo-secret",
    "sharedSecret": "example-shared-secret",
    "bearerToken": "example-bearer-token",
}
FALLBACK_ENV: dict[str, str] = {
    "SMC_ORGANIZATION": "demo",
    "SMC_EVENTS_LIST": "segment_events",
    "SMC_ALLOWED_EVENTS": "Order Completed,Product Viewed,Signed Up",
    "SMC_SEND_PAGE_EVENTS": "true",
    "SMC_SEND_SCREEN_EVENTS": "true",
    "SMC_SEND_ALIAS_EVENTS": "true",
    "SMC_SEND_GROUP_EVENTS": "true",
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
}
# Set by the stack itself: the example file's values point at a deployed account.
STACK_OWNED = ("SMC_ADMIN_URL", "SMC_EXTRA_ALLOWED_HOSTS", "SMC_SECRET_ID", "IDEMPOTENCY_TABLE")
# What the events' group calls use (events/payloads.py) and the sandbox seeds.
USERS_LIST = "users"
STATIC_SEGMENT = "vip"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def example_secret(events_dir: Path = EVENTS_DIR) -> dict[str, str]:
    """The example secret (Secrets Manager shape): SMC key and secret, shared secret, bearer token."""
    data = _read(events_dir / "examples.json")
    secret = data.get("secret") if isinstance(data, dict) else None
    if isinstance(secret, dict) and all(isinstance(secret.get(k), str) for k in FALLBACK_SECRET):
        return {str(k): str(v) for k, v in secret.items()}
    return dict(FALLBACK_SECRET)


def example_env(events_dir: Path = EVENTS_DIR) -> dict[str, str]:
    """The function's example settings (without the ones the stack sets itself)."""
    data = _read(events_dir / "env.json")
    env = data.get("WebhookFunction") if isinstance(data, dict) else None
    if not isinstance(env, dict):
        env = FALLBACK_ENV
    return {str(k): str(v) for k, v in env.items() if k not in STACK_OWNED}
