"""Reading SMC's answer to a transactional send: which messages it sent, which it refused.

The send must never be repeated once SMC may have acted on it, so every answer is sorted into:
sent (a recipient's `result_code` is `Succeeded`), refused (SMC says it did not send it, for a
reason a retry will not change), not sent now (SMC says it did not send it, but may later), and
unknown (SMC may have sent it: not repeated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handler.smc.answers import TRANSIENT_RESULT_CODES, error_codes

_REFUSED_CODES = frozenset({"Failed", "ValidationFailed", "NotFound"})
# A recipient's message that went out on some of its channels was sent: it is not sent again.
_SENT_CODES = frozenset({"Succeeded", "PartiallySucceeded"})


@dataclass(slots=True)
class SendVerdicts:
    """Per message of one send call (0-based, in the order sent)."""

    sent: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    later: dict[int, str] = field(default_factory=dict)  # not sent; may be sent on a retry
    unknown: dict[int, str] = field(default_factory=dict)  # may have been sent: never again


def _reason(record: Mapping[str, Any]) -> str:
    return f"SMC {str(record.get('result_code'))[:40]} ({error_codes(record)})"


def read_send_answer(items: int, status: int, data: Mapping[str, Any]) -> SendVerdicts:
    """The verdict on each of `items` messages from SMC's answer (`status` was not 401/403, 429 or
    503, which the client handles, nor 404, an unknown journey)."""
    verdicts = SendVerdicts()
    everything = range(items)
    if 400 <= status < 500:  # SMC refused the request before acting on it
        verdicts.refused = dict.fromkeys(everything, f"SMC refused the send ({status}: {error_codes(data)})")
        return verdicts
    if not 200 <= status < 300:  # a 5xx after the request arrived: it may have been acted on
        verdicts.unknown = dict.fromkeys(everything, f"SMC answered {status}")
        return verdicts
    records = data.get("response_data")
    if not isinstance(records, list) or len(records) != items:
        code = data.get("result_code")
        if code == "Succeeded":
            verdicts.sent = list(everything)
        elif code in ("Failed", "ValidationFailed"):
            verdicts.refused = dict.fromkeys(everything, _reason(data))
        elif code in TRANSIENT_RESULT_CODES:
            verdicts.later = dict.fromkeys(everything, _reason(data))
        else:
            verdicts.unknown = dict.fromkeys(everything, "SMC answered without a result per message")
        return verdicts
    for position, record in enumerate(records):
        code = record.get("result_code") if isinstance(record, dict) else None
        if code in _SENT_CODES:
            verdicts.sent.append(position)
        elif isinstance(record, dict) and code in TRANSIENT_RESULT_CODES:
            verdicts.later[position] = _reason(record)
        elif isinstance(record, dict) and code in _REFUSED_CODES:
            verdicts.refused[position] = _reason(record)
        else:
            verdicts.unknown[position] = "SMC answered without a readable result for it"
    return verdicts
