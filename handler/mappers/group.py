"""group → static segment membership: add to or remove from `traits.userlist`/`groupId`."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.operations import Action, Operation, Target
from handler.settings import Settings


def map_group(event: SegmentEvent, settings: Settings) -> Operation:
    """The userId is matched on the list field `traits.matchkey` (validated as an api name)."""
    traits = event.raw["traits"]
    matchkey = str(traits["matchkey"])
    action: Action = "delete" if str(traits.get("method", "ADD")).upper() == "REMOVE" else "load"
    target = Target(
        action,
        str(traits["userlist"]),
        key_fields=(matchkey,),
        fields=(matchkey,),
        segment=str(event.raw["groupId"]),
    )
    return Operation(target, [event.user_id], [event.index], order=(event.timestamp, event.index))
