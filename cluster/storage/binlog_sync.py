"""Replies that wait until their binlog records are on disk, one fdatasync for many (``sync_mode = always``).

With ``sync_mode = always`` a change is on disk before its reply.  The binlog record that tells the
peers about it must be too: were it lost in a power cut, the file would stay on this storage alone
for good, as no peer would ever hear of it.  So a request's reply waits until the binlog is synced
past the records the request wrote (:meth:`BinlogSync.durable`).

Group commit, as the store's own (:mod:`trunkstore.groupcommit`), but on the event loop: a sync
covers the records written before it started; a reply whose records end past what the running sync
covers waits for the next one, which it shares with every reply that arrived meanwhile.  Under load,
then, one fdatasync acknowledges many requests, and a lone request pays one.  The fdatasync runs in
the server's thread pool, never on the loop.  Replies do not wait with ``interval`` or ``none``;
with ``interval`` (and with ``always``, for records no reply waits for, such as those of an upload
cut short) :class:`~cluster.storage.replication.Replication` syncs the binlog every second, through
this same object.
"""

from __future__ import annotations

import asyncio
import errno
import logging
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
        #: The sync running in a thread, if any.
        self._running: asyncio.Future[None] | None = None

    def covers(self, position: BinlogPosition) -> bool:
        """Whether the records before ``position`` are on disk already."""
        return self.binlog.synced >= position

    async def durable(self, position: BinlogPosition) -> None:
        """Return once the records before ``position`` are on disk; :class:`BinlogSyncFailed` if a sync
        this waited for failed.

        A failed sync fails every waiter, even one whose records it had not set out to cover: those
        were written before it ended, and after a failed fdatasync their pages may be lost as well.
        """
        binlog = self.binlog
        while binlog.synced < position:
            running = self._running
            if running is None or running.done():
                running = asyncio.get_running_loop().run_in_executor(self._executor, binlog.sync)
                running.add_done_callback(_log_failure)
                self._running = running
            try:
                # Shielded: a waiter that goes away (its client disconnected) must not cancel the others'.
                await asyncio.shield(running)
            except OSError as exc:
                raise BinlogSyncFailed(f"the binlog could not be synced: {exc}") from exc


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("binlog sync failed: %s", future.exception())
