"""The replay checkpoint: which event positions of a file are settled for good, written atomically.

Settled for good means delivered, filtered, duplicate or rejected: sending those again cannot
change anything. Retried events (SMC unavailable) are never recorded, so the next run sends them.
The file is tied to the replay file's SHA-256: a checkpoint is never applied to other content.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERSION = 1


class CheckpointError(ValueError):
    """The checkpoint cannot be used with this file (unreadable, or made for other content)."""


def merge(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted, non-overlapping, non-adjacent half-open ranges [start, end)."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def ranges_of(positions: list[int]) -> list[list[int]]:
    """Half-open ranges covering exactly `positions`."""
    return merge([[p, p + 1] for p in positions])


@dataclass(slots=True)
class Checkpoint:
    """Done positions (as ranges) and cumulative outcome counts of one replay file."""

    path: Path
    file: str
    sha256: str
    events: int
    done: list[list[int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def done_count(self) -> int:
        """How many positions are settled."""
        return sum(end - start for start, end in self.done)

    def is_done(self, position: int) -> bool:
        """Whether `position` is settled."""
        index = bisect.bisect_right(self.done, position, key=lambda span: span[0]) - 1
        return index >= 0 and self.done[index][0] <= position < self.done[index][1]

    def mark(self, positions: list[int], counts: dict[str, int]) -> None:
        """Record settled positions and add to the outcome counts (call `save` to persist)."""
        self.done = merge(self.done + ranges_of(positions))
        for outcome, number in counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + number

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "version": VERSION,
            "file": self.file,
            "sha256": self.sha256,
            "events": self.events,
            "done": self.done,
            "counts": self.counts,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self) -> None:
        """Write atomically: a temporary file in the same folder, fsync, then rename over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_json(), handle, separators=(",", ":"))
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def default_path(replay_file: Path) -> Path:
    """`FILE.checkpoint.json` next to the replay file."""
    return replay_file.with_name(replay_file.name + ".checkpoint.json")


def load(path: Path, replay_file: Path, sha256: str, events: int) -> Checkpoint:
    """The checkpoint at `path` for this content, or a fresh one.

    Raises `CheckpointError` when it is unreadable or belongs to other content.
    """
    fresh = Checkpoint(path, str(replay_file), sha256, events)
    if not path.exists():
        return fresh
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise CheckpointError(f"checkpoint {path} has an unknown version")
        done = [[int(start), int(end)] for start, end in data["done"]]
        counts = {str(k): int(v) for k, v in data.get("counts", {}).items()}
        recorded = str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__})") from None
    if recorded != sha256:
        raise CheckpointError(f"checkpoint {path} was made for other content than {replay_file}")
    fresh.done, fresh.counts = merge(done), counts
    return fresh
