"""Building the API Gateway responses Segment reads."""

from __future__ import annotations

import json
import math
from typing import Any

DEFAULT_RETRY_AFTER_S = 5

_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def json_response(status: int, body: dict[str, Any], retry_after: float | None = None) -> dict[str, Any]:
    """An HTTP API response; `Retry-After` is set on every retryable status."""
    headers = dict(_HEADERS)
    if status in (429, 503):
        seconds = DEFAULT_RETRY_AFTER_S if retry_after is None else retry_after
        headers["Retry-After"] = str(max(1, min(3600, math.ceil(seconds))))
    return {"statusCode": status, "headers": headers, "body": json.dumps(body, separators=(",", ":"))}


def error_response(
    status: int, code: str, message: str, request_id: str, retry_after: float | None = None
) -> dict[str, Any]:
    """A request-level error: `{"error": code, "message": …, "requestId": …}`."""
    return json_response(status, {"error": code, "message": message, "requestId": request_id}, retry_after)
