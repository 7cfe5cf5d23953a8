"""Group commit: concurrent writers share one round of ``fdatasync`` calls.

A writer stages its work, takes a ticket and waits.  The first waiter with no commit running becomes
the leader: it runs the commit function, which makes everything staged so far durable, and wakes every
writer whose ticket that commit covered.  Writers that arrive meanwhile queue for the next round, so
under load one round of syncs acknowledges many writes, and a lone writer pays exactly one round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class GroupCommit:
    """Leader/follower batching of a commit function."""

    __slots__ = ("_commit", "_cond", "_done", "_failures", "_requested", "_running")

    def __init__(self, commit: Callable[[], None]) -> None:
        self._commit = commit
        self._cond = threading.Condition(threading.Lock())
        self._requested = 0
        self._done = 0
        self._running = False
        # (first ticket, last ticket, error) of recent failed rounds, for their waiters to re-raise.
        self._failures: list[tuple[int, int, BaseException]] = []

    def ticket(self) -> int:
        """Register staged work; call after staging, before :meth:`wait`."""
        with self._cond:
            self._requested += 1
            return self._requested

    def wait(self, ticket: int) -> None:
        """Return once the work registered under ``ticket`` is durable; raise if its commit failed."""
        cond = self._cond
        with cond:
            while self._done < ticket:
                if self._running:
                    cond.wait()
                    continue
                self._running = True
                target = self._requested
                first = self._done + 1
                cond.release()
                error: BaseException | None = None
                try:
                    self._commit()
                except BaseException as exc:
                    error = exc
                finally:
                    cond.acquire()
                    self._running = False
                    self._done = target
                    if error is not None:
                        self._failures = [*self._failures[-63:], (first, target, error)]
                    cond.notify_all()
            for first_ticket, last_ticket, failure in self._failures:
                if first_ticket <= ticket <= last_ticket:
                    raise failure
