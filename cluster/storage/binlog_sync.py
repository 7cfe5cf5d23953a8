"""Replies that wait until their binlog records are on disk, one fdatasync for many (``sync_mode = always``).

With ``sync_mode = always`` a change is on disk before its reply.  The binlog record that tells the
peers about it must be too: were it lost in a power cut, the file would stay on this storage alone
for good, as no peer would ever hear of it.  So a request's reply waits until the binlog is synced
past the records the request wrote (:meth:`BinlogSync.durable`).

Group commit, as the store's own (:mod:`trunkstore.groupcommit`), but on the event loop: a sync
covers the records written before it started; a reply whose records end past what the running sync
covers waits for the next one, which it shares with every reply that arrived meanwhile.  Under load,
then, one fdatasync acknowledges many requests, and a lone request pays one.  The fdatasync runs in
the server's thread pool, never on the loop.

A request whose work ran in that thread pool syncs its records there as well, as soon as the work is
done (:meth:`BinlogSync.sync_here`): its reply then finds them on disk and goes out at once, without
a second trip through the loop and the pool.  Threads doing so share syncs too: one syncs while the
others wait for it, and then usually find their records covered.

Replies do not wait with ``interval`` or ``none``;
with ``interval`` (and with ``always``, for records no reply waits for, such as those of an upload
cut short) :class:`~cluster.storage.replication.Replication` syncs the binlog every second, through
this same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from typing import TYPE_CHECKING

from cluster.errors import ClusterError

from .binlog import Binlog, BinlogPosition

if TYPE_CHECKING:
    import concurrent.futures

log = logging.getLogger(__name__)


class BinlogSyncFailed(ClusterError, OSError):
    """The binlog could not be synced (EIO, whatever errno the disk gave).

    The request's change is done here, but its record may not survive a power cut (after a failed
    fdatasync the kernel may have dropped the pages it could not write), so it is not acknowledged.
    """

    status = errno.EIO


class BinlogSync:
    """Syncs a :class:`~cluster.storage.binlog.Binlog` for the replies waiting for it."""

    def __init__(self, binlog: Binlog, executor: concurrent.futures.Executor) -> None:
        self.binlog = binlog
        self._executor = executor
        #: The sync running in a thread for the loop's waiters, if any.
        self._running: asyncio.Future[None] | None = None
        #: Held by the worker thread syncing for its own request (:meth:`sync_here`).
        self._here_lock = threading.Lock()
        #: The end of the binlog when a sync last failed, and its error: the records before that end
        #: may be lost (after a failed fdatasync the kernel may have dropped the pages it could not
        #: write, and a second fdatasync would not say so), so no reply waiting for them succeeds.
        self._failed: tuple[BinlogPosition, OSError] | None = None

    def covers(self, position: BinlogPosition) -> bool:
        """Whether the records before ``position`` are on disk already."""
        return self.binlog.synced >= position

    def _may_be_lost(self, position: BinlogPosition) -> OSError | None:
        """The error of the failed sync after which the records before ``position``, not yet known to be on
        disk, may be lost."""
        failed = self._failed
        return failed[1] if failed is not None and position <= failed[0] else None

    def _sync(self) -> None:
        """Sync the binlog (in a worker thread), noting a failure for every waiter it concerns."""
        try:
            self.binlog.sync()
        except OSError as exc:
            # Records written until now, not only those this sync set out to cover.
            self._failed = (self.binlog.end, exc)
            log.error("binlog sync failed: %s", exc)
            raise

    def sync_here(self, position: BinlogPosition) -> None:
        """From the worker thread whose request wrote the records before ``position``: sync them now.

        Never raises: a failure is noted, and :meth:`durable` reports it to the request's reply.
        """
        if self.covers(position):
            return
        with self._here_lock:
            if self.covers(position) or self._may_be_lost(position) is not None:
                return
            with contextlib.suppress(OSError):
                self._sync()

    async def durable(self, position: BinlogPosition) -> None:
        """Return once the records before ``position`` are on disk; :class:`BinlogSyncFailed` if a sync
        ended in failure after they were written.

        A failed sync fails every waiter, even one whose records it had not set out to cover: those
        were written before it ended, and after a failed fdatasync their pages may be lost as well.
        """
        binlog = self.binlog
        while binlog.synced < position:
            lost = self._may_be_lost(position)
            if lost is not None:
                raise BinlogSyncFailed(f"the binlog could not be synced: {lost}") from lost
            running = self._running
            if running is None or running.done():
                running = asyncio.get_running_loop().run_in_executor(self._executor, self._sync)
                running.add_done_callback(_retrieved)
                self._running = running
            try:
                # Shielded: a waiter that goes away (its client disconnected) must not cancel the others'.
                await asyncio.shield(running)
            except OSError as exc:
                raise BinlogSyncFailed(f"the binlog could not be synced: {exc}") from exc


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a sync's failure as seen (it is logged where it happened), even if no waiter is left."""
    if not future.cancelled():
        future.exception()
