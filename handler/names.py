"""SMC api names: the only identifiers from an event that end up in a request path or query."""

from __future__ import annotations

import re

# SMC api names are identifiers; refusing anything else (slashes, dots, '%', '?', spaces, unicode
# look-alikes) means no event can steer a request outside its intended path segment.
_API_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,99}")


def is_api_name(value: object) -> bool:
    """Whether `value` is a string SMC accepts as a list, segment, field or organization name."""
    return isinstance(value, str) and _API_NAME.fullmatch(value) is not None
