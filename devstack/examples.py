"""The example values the local stack shares with `events/`: secret, settings and names.

They are read from `events/examples.json` (the example secret) and `events/env.json` (the
function's example settings), the files the event signatures are made with, so the stack, the
event files and their signatures always agree: there is no second copy to drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devstack.state import StackError

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

SECRET_FIELDS = ("apiKey", "apiSecret", "sharedSecret", "bearerToken")
# Set by the stack itself: the example file's values point at a deployed account.
STACK_OWNED = (
    "SMC_ADMIN_URL",
    "SMC_EXTRA_ALLOWED_HOSTS",
    "SMC_SECRET_ID",
    "IDEMPOTENCY_TABLE",
    "STATE_TABLE",
)
# What the events' group calls use (events/payloads.py) and the sandbox seeds.
USERS_LIST = "users"
STATIC_SEGMENT = "vip"
EXAMPLE_CUSTOMER = "user_48213"  # the userId of events/ (events/payloads.py)
AUDIENCE_SEGMENT = "high_value_customers"  # the Engage audience of events/audience_entered.json
ORDER_JOURNEY = "order_confirmation"  # the journey events/env.json's Order Completed triggers


class ExamplesError(StackError):
    """An example file of `events/` is missing or not what `make events` writes."""


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExamplesError(f"{path} cannot be read ({exc}); run `make events` to regenerate it") from exc


def example_secret(events_dir: Path = EVENTS_DIR) -> dict[str, str]:
    """The example secret (Secrets Manager shape): SMC key and secret, shared secret, bearer token."""
    data = _read(events_dir / "examples.json")
    secret = data.get("secret") if isinstance(data, dict) else None
    if not isinstance(secret, dict) or not all(isinstance(secret.get(k), str) for k in SECRET_FIELDS):
        raise ExamplesError(f"{events_dir / 'examples.json'} has no `secret` with {', '.join(SECRET_FIELDS)}")
    return {str(k): str(v) for k, v in secret.items()}


def example_env(events_dir: Path = EVENTS_DIR) -> dict[str, str]:
    """The function's example settings (without the ones the stack sets itself)."""
    data = _read(events_dir / "env.json")
    env = data.get("WebhookFunction") if isinstance(data, dict) else None
    if not isinstance(env, dict):
        raise ExamplesError(f"{events_dir / 'env.json'} has no WebhookFunction settings; run `make events`")
    return {str(k): str(v) for k, v in env.items() if k not in STACK_OWNED}
