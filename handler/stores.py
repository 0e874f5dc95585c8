"""Where delivery keeps state across requests, both in `STATE_TABLE`: the ordering records of
overwritten state (handler.ordering) and the at-most-once records of transactional messages
(handler.transactional)."""

from __future__ import annotations

from dataclasses import dataclass

from handler.ordering import OrderingStore
from handler.settings import Settings
from handler.transactional import SendLedger


@dataclass(frozen=True, slots=True)
class Stores:
    """None where not kept (no `STATE_TABLE`): no order safety, no transactional messages."""

    ordering: OrderingStore | None = None
    sends: SendLedger | None = None


def stores_for(settings: Settings) -> Stores:
    """The stores the settings name."""
    if not settings.state_table:
        return Stores()
    ttl = settings.ordering_ttl_seconds
    return Stores(OrderingStore(settings.state_table, ttl), SendLedger(settings.state_table, ttl))
