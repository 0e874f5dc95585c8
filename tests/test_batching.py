"""Batching: rows grouped per target, chunked by rows and bytes, membership changes coalesced."""

from __future__ import annotations

import json

from handler import batching
from handler.batching import coalesce_memberships, plan
from handler.events import validate_event
from handler.mappers import map_event
from handler.settings import load_settings
from tests import support
from tests.test_settings import BASE

NOW = "2026-11-27T12:00:00.000Z"
SETTINGS = load_settings(BASE)


def ops(raws):
    return [op for i, raw in enumerate(raws) for op in map_event(validate_event(i, raw, NOW), SETTINGS)]


def test_a_mixed_request_costs_one_call_per_target():
    raws = [support.track() for _ in range(300)] + [support.identify() for _ in range(300)]
    raws += [support.group("ADD") for _ in range(50)] + [
        support.group("REMOVE", segment="churn") for _ in range(20)
    ]
    raws += [support.delete(userId=f"gone-{i}") for i in range(5)]
    phases = plan(ops(raws))
    assert [len(p) for p in phases] == [3, 1]
    first = {(c.target.action, c.target.segment): c.rows for c in phases[0]}
    assert first == {("load", None): 600, ("load", "vip"): 50, ("delete", "churn"): 20}
    assert phases[1][0].target.action == "delete" and phases[1][0].rows == 5


def test_chunks_respect_the_row_limit(monkeypatch):
    monkeypatch.setattr(batching, "MAX_ROWS_PER_CALL", 100)
    phases = plan(ops([support.track() for _ in range(250)]))
    assert [c.rows for c in phases[0]] == [100, 100, 50]
    assert sum(len(json.loads(c.body)) for c in phases[0]) == 250


def test_chunks_respect_the_byte_limit(monkeypatch):
    monkeypatch.setattr(batching, "MAX_BYTES_PER_CALL", 20_000)
    phases = plan(ops([support.track() for _ in range(100)]))
    assert len(phases[0]) > 1 and all(len(c.body) <= 20_000 for c in phases[0])
    assert [i for c in phases[0] for s in c.sources for i in s] == list(range(100))


def test_add_then_remove_of_the_same_member_keeps_only_the_latest_change():
    add = support.group("ADD", userId="u-1", timestamp="2026-11-27T10:00:00Z")
    remove = support.group("REMOVE", userId="u-1", timestamp="2026-11-27T10:00:05Z")
    kept = coalesce_memberships(ops([remove, add]))  # arrival order differs from timestamp order
    assert len(kept) == 1 and kept[0].target.action == "delete" and sorted(kept[0].sources) == [0, 1]


def test_same_timestamp_membership_changes_resolve_by_message_id_as_across_requests():
    add = support.group("ADD", userId="u-1", messageId="m-2")
    remove = support.group("REMOVE", userId="u-1", messageId="m-1")
    assert coalesce_memberships(ops([add, remove]))[0].target.action == "load"
    assert coalesce_memberships(ops([remove, add]))[0].target.action == "load"


def test_user_deletions_run_after_loads():
    phases = plan(ops([support.delete(userId="u-1"), support.track(userId="u-1")]))
    assert phases[0][0].target.action == "load" and phases[1][0].target.action == "delete"
