"""group → static segment membership: add to or remove from `traits.userlist`/`groupId`."""

from __future__ import annotations

from handler.events import Method, SegmentEvent
from handler.mappers.membership import membership
from handler.operations import Operation
from handler.settings import Settings


def map_group(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """The userId is matched on the list field `traits.matchkey` (validated as an api name)."""
    traits = event.raw["traits"]
    method: Method = "REMOVE" if str(traits.get("method", "ADD")).upper() == "REMOVE" else "ADD"
    return [
        membership(
            event,
            settings,
            str(traits["userlist"]),
            str(event.raw["groupId"]),
            str(traits["matchkey"]),
            method,
            part="membership",
        )
    ]
