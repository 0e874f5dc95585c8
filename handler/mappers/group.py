"""group → static segment membership: add to or remove from `traits.userlist`/`groupId`."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.operations import Action, Operation, Target
from handler.ordering import Claim, record_key, stamp
from handler.settings import Settings


def map_group(event: SegmentEvent, settings: Settings) -> Operation:
    """The userId is matched on the list field `traits.matchkey` (validated as an api name)."""
    traits = event.raw["traits"]
    matchkey = str(traits["matchkey"])
    method = "REMOVE" if str(traits.get("method", "ADD")).upper() == "REMOVE" else "ADD"
    action: Action = "delete" if method == "REMOVE" else "load"
    target = Target(
        action,
        str(traits["userlist"]),
        key_fields=(matchkey,),
        fields=(matchkey,),
        segment=str(event.raw["groupId"]),
    )
    user_id = str(event.user_id)
    # SMC names are case-insensitive: `VIP` and `vip` are one segment, so one ordering record.
    names = (settings.organization, target.list_name, str(target.segment), matchkey)
    key = record_key("member", *(name.lower() for name in names), user_id)
    claim = Claim(key, {"member": method}, stamp(event.timestamp, event.message_id))
    return Operation(target, [user_id], [event.index], order=(event.timestamp, event.index), claim=claim)
