"""The profile list's text column lengths, read from SMC once in a while, so descriptive profile
values are cut to their column as the events list's are (SMC would refuse the whole row).

Unknown lengths (SMC not answering, or not yet read) leave values as they are: SMC's answer then
names any row it refuses, and the event is rejected with that reason.
"""

from __future__ import annotations

import threading
import time

from handler.deadline import Deadline
from handler.errors import SmcError
from handler.observability import logger
from handler.smc.client import SmcClient, json_object

REFRESH_S = 900.0  # columns change rarely; a column added by an admin is seen within this
RETRY_S = 60.0  # after a failed read
READ_TIMEOUT_S = 1.0

_lock = threading.Lock()
_lengths: dict[str, dict[str, int]] = {}  # list (lower case) → COLUMN (upper case) → length
_next_read: dict[str, float] = {}


def ensure(client: SmcClient, list_name: str) -> None:
    """Read the list's columns unless they were read recently."""
    key = list_name.lower()
    with _lock:
        if time.monotonic() < _next_read.get(key, 0.0):
            return
        _next_read[key] = time.monotonic() + RETRY_S  # one reader at a time; a failure waits
    try:
        response = client.call("GET", f"/lists/{list_name}/fields", Deadline(READ_TIMEOUT_S))
    except SmcError as exc:
        logger.info("profile columns not read", extra={"error": exc.reason})
        return
    fields = json_object(response).get("fields") if response.status_code == 200 else None
    if not isinstance(fields, list):
        logger.info("profile columns not read", extra={"status": response.status_code})
        return
    lengths = {
        str(f.get("name", "")).upper(): f["length"]
        for f in fields
        if isinstance(f, dict) and f.get("data_type") == "Text" and isinstance(f.get("length"), int)
    }
    with _lock:
        _lengths[key] = lengths
        _next_read[key] = time.monotonic() + REFRESH_S


def length(list_name: str, column: str) -> int:
    """The column's length in UTF-16 units, or 0 when it has none or is not known."""
    return _lengths.get(list_name.lower(), {}).get(column.upper(), 0)


def forget() -> None:
    """Forget every list's columns (tests; a new configuration)."""
    with _lock:
        _lengths.clear()
        _next_read.clear()
