"""Grouping a request's operations into as few SMC calls as the limits allow."""

from __future__ import annotations

import json
from dataclasses import dataclass

from handler.events import compact_json
from handler.operations import Operation, Target
from handler.ordering import Claim

MAX_ROWS_PER_CALL = 2000
MAX_BYTES_PER_CALL = 3 * 1024 * 1024


@dataclass(slots=True)
class Chunk:
    """One SMC call: a target and a JSON array of rows; `sources[i]` are the events behind row i,
    `values[i]` the row itself (kept to send some rows again without the others)."""

    target: Target
    body: bytes
    sources: list[list[int]]
    values: list[list[object]]
    claims: list[Claim | None] | None = None  # per row; None when no row overwrites state

    @property
    def rows(self) -> int:
        """How many rows the call carries."""
        return len(self.sources)

    def subset(self, rows: list[int]) -> Chunk:
        """The same call with only `rows` (indexes into this chunk), in their order."""
        claims = None if self.claims is None else [self.claims[row] for row in rows]
        return Chunk.of(
            self.target, [self.values[row] for row in rows], [self.sources[row] for row in rows], claims
        )

    @classmethod
    def of(
        cls,
        target: Target,
        values: list[list[object]],
        sources: list[list[int]],
        claims: list[Claim | None] | None = None,
    ) -> Chunk:
        """A call of these rows (one that fits: a subset of a chunk that did)."""
        body = b"[" + b",".join(map(_utf8_row, values)) + b"]"
        return cls(target, body, sources, values, claims)


def coalesce_memberships(operations: list[Operation]) -> list[Operation]:
    """Keep only the last intended membership change per (segment, person).

    Adding and removing the same person in one batch go to two different endpoints that may run
    in parallel; applying only the latest (by timestamp, then messageId: the order the ordering
    records keep across requests) makes the end state the one the sender intended. Superseded
    events share the outcome of the change that won. "The same" is the ordering record's own
    identity (case-insensitive names, as SMC's are), so one request never claims it twice.
    """
    latest: dict[object, Operation] = {}
    kept: list[Operation] = []
    for op in operations:
        if op.target.segment is None:
            kept.append(op)
            continue
        key: object = (
            op.claim.key
            if op.claim is not None
            else (op.target.list_name, op.target.segment, op.target.key_fields, op.row[0])
        )
        current = latest.get(key)
        if current is None:
            latest[key] = op
        elif op.order >= current.order:
            op.sources = current.sources + op.sources
            latest[key] = op
        else:
            current.sources.extend(op.sources)
    return kept + list(latest.values())


def _utf8_row(row: list[object]) -> bytes:
    """A row as SMC can read it: UTF-8 JSON. A lone surrogate (JSON.stringify passes such escapes
    on) has no UTF-8 form, so that row goes out ASCII-escaped instead; encoding it raw would make
    the whole call unreadable to SMC and refuse every event in it."""
    text = compact_json(row)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(row, separators=(",", ":"), default=str).encode("ascii")


def _one_chunk(target: Target, operations: list[Operation]) -> Chunk | None:
    """The common case in one encoder call instead of one per row: every row fits one call.

    `compact_json` of the list is byte for byte `[` + the rows' encodings joined by `,` + `]`,
    which is what `_chunks` builds; the size test is `_chunks`' own, summed over the rows. None
    when `_chunks` would split, or when a row needs its ASCII fallback (`_utf8_row`)."""
    if len(operations) > MAX_ROWS_PER_CALL:
        return None
    try:
        body = compact_json([op.row for op in operations]).encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(operations) > 1 and len(body) + 1 > MAX_BYTES_PER_CALL:
        return None
    return Chunk(
        target, body, [op.sources for op in operations], [op.row for op in operations], _claims(operations)
    )


def _claims(operations: list[Operation]) -> list[Claim | None] | None:
    claims = [op.claim for op in operations]
    return claims if any(claim is not None for claim in claims) else None


def _chunks(target: Target, operations: list[Operation]) -> list[Chunk]:
    single = _one_chunk(target, operations)
    if single is not None:
        return [single]
    chunks: list[Chunk] = []
    parts: list[bytes] = []
    ops: list[Operation] = []
    size = 2
    for op in operations:
        encoded = _utf8_row(op.row)
        if parts and (len(parts) >= MAX_ROWS_PER_CALL or size + len(encoded) + 1 > MAX_BYTES_PER_CALL):
            chunks.append(_joined(target, parts, ops))
            parts, ops, size = [], [], 2
        parts.append(encoded)
        ops.append(op)
        size += len(encoded) + 1
    if parts:
        chunks.append(_joined(target, parts, ops))
    return chunks


def _joined(target: Target, parts: list[bytes], ops: list[Operation]) -> Chunk:
    body = b"[" + b",".join(parts) + b"]"
    return Chunk(target, body, [op.sources for op in ops], [op.row for op in ops], _claims(ops))


def plan(operations: list[Operation]) -> list[list[Chunk]]:
    """Two phases of calls (either may be empty): every load and segment change, then user
    deletions (of their events-list rows and profiles).

    Calls within a phase touch different targets and may run in parallel; deletions run last so
    a person deleted in the same batch as their events ends up with no rows.
    """
    by_target: dict[Target, list[Operation]] = {}
    for op in coalesce_memberships(operations):
        by_target.setdefault(op.target, []).append(op)
    first: list[Chunk] = []
    last: list[Chunk] = []
    for target, ops in by_target.items():
        phase = last if target.action == "delete" and target.segment is None else first
        phase.extend(_chunks(target, ops))
    return [first, last]
