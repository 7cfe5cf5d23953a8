"""Replicas of small files stored concurrently on one connection, their replies sent in order.

A peer streams its SYNC_CREATE_FILE requests on one connection, pipelined.  With a durable store
each replica waits for its fsync; taken one at a time, one connection would get one fsync per
file (under a thousand files a second on this disk).  Run side by side in the server's threads,
they share the store's group commit instead.  Creates of different files are independent (a slot
is reused only after a delete of the file in it), so only they overlap: any other request waits
until the creates before it are done, and the replies leave in request order.  With ``sync_mode =
always`` each reply also waits until the create's binlog record is on disk: creates done together
share one binlog sync, as they share the store's.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import concurrent.futures

    from .binlog import BinlogPosition
    from .binlog_sync import BinlogSync

#: Replica creates in flight on one connection before it stops reading.
MAX_IN_FLIGHT = 64


class ReplicaPipeline:
    """The in-flight creates of one connection (see the module docstring)."""

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        send: Callable[[bytes], None],
        fail: Callable[[BaseException], None],
        binlog_sync: BinlogSync | None = None,
    ) -> None:
        self._executor = executor
        self._send = send
        self._fail = fail
        self._binlog_sync = binlog_sync
        #: Each create's reply, and where its binlog records end.
        self._in_flight: collections.deque[asyncio.Future[tuple[bytes, BinlogPosition | None]]] = collections.deque()
        self._shrunk = asyncio.Event()
        self._replier: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._in_flight)

    def start(self, work: Callable[[], bytes]) -> asyncio.Future[None] | None:
        """Run ``work`` (a create, returning its reply) in a thread; something to wait for before
        the next request when too many are in flight."""
        self._in_flight.append(asyncio.wrap_future(self._executor.submit(self._run, work)))
        if self._replier is None or self._replier.done():
            self._replier = asyncio.ensure_future(self._reply_in_order())
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            return asyncio.ensure_future(self.until(MAX_IN_FLIGHT // 2))
        return None

    async def until(self, count: int) -> None:
        """Until at most ``count`` creates are in flight (0: all done and answered)."""
        while len(self._in_flight) > count:
            self._shrunk.clear()
            await self._shrunk.wait()

    def _run(self, work: Callable[[], bytes]) -> tuple[bytes, BinlogPosition | None]:
        """In a thread: ``work()``, and where the binlog records it wrote end (if replies wait for them)."""
        binlog_sync = self._binlog_sync
        if binlog_sync is None:
            return work(), None
        return binlog_sync.binlog.written_by(work)

    async def _reply_in_order(self) -> None:
        in_flight = self._in_flight
        binlog_sync = self._binlog_sync
        while in_flight:
            future = in_flight[0]
            try:
                reply, recorded = await future
                if recorded is not None and binlog_sync is not None:
                    await binlog_sync.durable(recorded)
            except Exception as exc:
                in_flight.popleft()
                self._fail(exc)
            else:
                in_flight.popleft()
                self._send(reply)
            self._shrunk.set()
