"""delete (user deletion request) → remove the user's rows from the events list (and, with a
profile list and SMC_DELETE_PROFILES, the profile record)."""

from __future__ import annotations

from handler.events import SegmentEvent
from handler.operations import Operation, Target
from handler.schema import ANONYMOUS_ID, USER_ID
from handler.settings import Settings


def map_delete(event: SegmentEvent, settings: Settings) -> list[Operation]:
    """Deletes every row of the person, keyed on USER_ID (or ANONYMOUS_ID when that is all there is)."""
    key, value = (USER_ID, event.user_id) if event.user_id else (ANONYMOUS_ID, event.anonymous_id)
    # Done only when SMC's counters say so (deleted or not found for the row): a 404 is a list
    # that does not exist, never proof that the person's rows are gone.
    target = Target("delete", settings.events_list, (key,), (key,))
    operations = [Operation(target, [value], [event.index])]
    profiles = settings.profiles
    if profiles is not None and profiles.delete_profiles and event.user_id:
        record = Target(
            "delete",
            profiles.list_name,
            (profiles.key,),
            (profiles.key,),
            part="profile deletion",
        )
        operations.append(Operation(record, [event.user_id], [event.index]))
    return operations
