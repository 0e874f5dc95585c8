"""Static segment membership, from a group call or an Engage audience: a row keyed on the match key."""

from __future__ import annotations

from handler.events import Method, SegmentEvent
from handler.operations import Operation, Target
from handler.ordering import Claim, record_key, stamp
from handler.settings import Settings


def membership(
    event: SegmentEvent,
    settings: Settings,
    list_name: str,
    segment: str,
    matchkey: str,
    method: Method,
    *,
    part: str,
    managed: bool = False,
) -> Operation:
    """Add the event's userId to (or remove it from) `list_name`/`segment`, matched on `matchkey`.

    `managed`: the destination owns the segment (an audience): it creates it on the first ADD,
    and a REMOVE from a segment SMC does not have is done already.
    """
    add = method == "ADD"
    profiles = settings.profiles
    # A segment load upserts into the list as a list load does: into the profile list it follows
    # SMC_PROFILE_MODE, so OnlyUpdate never creates a profile through a membership either.
    into_profiles = profiles is not None and list_name.lower() == profiles.list_name.lower()
    target = Target(
        "load" if add else "delete",
        list_name,
        key_fields=(matchkey,),
        fields=(matchkey,),
        segment=segment,
        absent_segment_is_done=managed and not add,
        create_segment=managed and add,
        import_option=profiles.mode if add and into_profiles and profiles is not None else None,
        part=part,
    )
    user_id = str(event.user_id)
    # SMC names are case-insensitive: `VIP` and `vip` are one segment, so one ordering record.
    names = (settings.organization, list_name, segment, matchkey)
    key = record_key("member", *(name.lower() for name in names), user_id)
    order = (event.order_time, event.message_id)
    claim = Claim(key, {"member": method}, stamp(*order))
    return Operation(target, [user_id], [event.index], order=order, claim=claim)
