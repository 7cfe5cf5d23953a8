"""Idle connections kept per server address, for both clients.

A connection is taken out of the pool for one exchange and given back only if that exchange ended
cleanly (a complete reply read); one that saw a transport or protocol error is closed instead.
The most recently used connection is reused first (LIFO), so that surplus connections age and are
dropped.  A pooled connection is checked before reuse: older than ``max_idle_time``, or closed by
the server while idle (which servers do), it is closed and the next one tried.

Thread-safe: the blocking client may be shared between threads (one exchange per connection at a
time); the asyncio client uses it from its loop only.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, Protocol, TypeVar


class Poolable(Protocol):
    """What the pool needs of a connection."""

    idle_since: float

    def alive(self) -> bool:
        """False if the server closed it (or sent something unasked) while it was idle."""
        ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Poolable)
Key = tuple[str, int]


class ConnectionPool(Generic[C]):
    """Up to ``max_idle`` idle connections per address, each reused within ``max_idle_time`` seconds."""

    def __init__(self, max_idle: int, max_idle_time: float) -> None:
        self.max_idle = max_idle
        self.max_idle_time = max_idle_time
        self._idle: dict[Key, list[C]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def take(self, key: Key) -> C | None:
        """A live idle connection to ``key``, or None."""
        while True:
            with self._lock:
                stack = self._idle.get(key)
                if not stack:
                    return None
                conn = stack.pop()
            if time.monotonic() - conn.idle_since <= self.max_idle_time and conn.alive():
                return conn
            conn.close()

    def give(self, key: Key, conn: C) -> None:
        """Keep ``conn`` for reuse, or close it if the pool for ``key`` is full (or closed)."""
        now = time.monotonic()
        conn.idle_since = now
        expired: list[C] = []
        with self._lock:
            stack = self._idle.setdefault(key, [])
            while stack and now - stack[0].idle_since > self.max_idle_time:
                expired.append(stack.pop(0))
            keep = not self._closed and len(stack) < self.max_idle
            if keep:
                stack.append(conn)
        for old in expired:
            old.close()
        if not keep:
            conn.close()

    def idle_count(self, key: Key) -> int:
        with self._lock:
            return len(self._idle.get(key, ()))

    def close(self) -> None:
        """Close every idle connection; connections given back later are closed too."""
        with self._lock:
            self._closed = True
            stacks, self._idle = list(self._idle.values()), {}
        for stack in stacks:
            for conn in stack:
                conn.close()
