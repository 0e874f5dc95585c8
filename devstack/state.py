"""One local stack at a time: a lock in the state folder, free ports, and `stack.json` for `demo`.

The lock is an `flock` on `<state dir>/stack.lock`, held for the stack's whole life: the operating
system releases it when the process ends, however it ends, so a crash never leaves a stale lock.
`stack.json` (written once everything is up, removed on stop) tells `demo` and a second start
where the running stack is.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

LOCK_FILE = "stack.lock"
STATE_FILE = "stack.json"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (all bound at once, so never the same twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class StackError(Exception):
    """The stack cannot start (or be found); the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Port:
    """A port the stack needs, and how the user changes it."""

    name: str
    number: int
    flag: str
    env: str


def check_ports(host: str, ports: list[Port]) -> None:
    """Raise `StackError` naming the first port another program already listens on."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves do
            try:
                sock.bind((host, port.number))
            except OSError as exc:
                reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
                raise StackError(
                    f"port {port.number} ({port.name}) {reason} by another program.\n"
                    f"Choose another one: {port.flag} N, or {port.env}=N make run"
                ) from None


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The running stack's `stack.json`, or None."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StackLock:
    """Holds the state folder's lock while the stack runs."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._handle: TextIO | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `StackError` describing the stack that holds it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.state_dir / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StackError(self._running_message()) from None
        self._handle = handle

    def _running_message(self) -> str:
        state = read_state(self.state_dir) or {}
        pid = state.get("pid", "?")
        where = f"\n  webhook URL: {state['webhook_url']}" if state.get("webhook_url") else ""
        return (
            f"A local stack is already running (pid {pid}, state in {self.state_dir}).{where}\n"
            f"Use it (make demo), or stop it first: Ctrl-C in its terminal, or kill -INT {pid}."
        )

    def write_state(self, state: dict[str, Any]) -> None:
        """Publish where the running stack is (atomically: readers never see half a file)."""
        path = self.state_dir / STATE_FILE
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps({"pid": os.getpid(), **state}, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)

    def release(self) -> None:
        """Remove `stack.json` and let go of the lock."""
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            (self.state_dir / STATE_FILE).unlink()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
