"""What mappers produce: rows bound for one SMC target (a list or static segment to load or delete
from, or a transactional journey to send to)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from handler.ordering import Claim

Action = Literal["load", "delete", "send"]


@dataclass(frozen=True, slots=True)
class Target:
    """One SMC endpoint and its query: every row sent to it shares this."""

    action: Action
    list_name: str
    key_fields: tuple[str, ...]
    fields: tuple[str, ...]
    segment: str | None = None
    # A removal from a segment the destination owns (an audience): when SMC's 404 says that very
    # segment does not exist, nobody is in it, so the removal is done. A 404 for anything else
    # (the list, the path) is a configuration error, and nothing else makes a 404 count as done.
    absent_segment_is_done: bool = False
    # SMC's `data_import_option` for loads; None sends none (SMC's default, InsertAndUpdate).
    import_option: str | None = None
    # An audience's static segment is created when SMC does not have it yet.
    create_segment: bool = False
    # Which part of its events this target is (an event may have several: its outcome is the
    # worst of theirs, and a failure's reason names the part).
    part: str = "events list"

    def describe(self) -> str:
        """A log-safe label, e.g. `load segment_events` or `delete users/vip`."""
        where = f"{self.list_name}/{self.segment}" if self.segment else self.list_name
        return f"{self.action} {where}"


@dataclass(slots=True)
class Operation:
    """One row for one target, and the events (usually one) whose outcome it decides."""

    target: Target
    row: list[object]
    sources: list[int] = field(default_factory=list)
    # Orders operations that touch the same thing (segment membership): later wins. Timestamp,
    # then messageId, as the ordering records compare them.
    order: tuple[str, str] = ("", "")
    # Its ordering record, for state it overwrites (handler.ordering): None for rows keyed on
    # MESSAGE_ID and for deletions, which nothing can make stale.
    claim: Claim | None = None
    # Why this part cannot be sent at all (the event is rejected for it, the others still go).
    refused: str | None = None
