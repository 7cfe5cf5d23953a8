"""Replication within a group, as one storage runs it: its binlog, its senders, its replica side.

:class:`Replication` owns

* the :class:`~cluster.storage.binlog.Binlog` the service records every change in, and its
  :class:`~cluster.storage.binlog_sync.BinlogSync`: with ``sync_mode = always`` each reply waits for
  its records to be synced; the binlog is also synced every second when the store syncs at all, so
  records are as durable as ``sync_mode`` promises files;
* one :class:`~cluster.storage.replicator.PeerSync` task per other member of the group, started and
  stopped as the trackers' member lists change (checked every :data:`RECONCILE_EVERY` seconds);
* the replica side (:class:`~cluster.storage.sync_apply.SyncApplier`) and the progress it makes,
  which the tracker reporters send as SYNC_REPORT.

Only members of the group may send SYNC_* requests: :meth:`accepts` checks the connecting address
against the members the trackers list, as FastDFS's storage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cluster.errors import Busy, ClusterError, RequestTimeout
from cluster.protocol import ProtocolError, Request, StorageBrief, SyncProgress
from cluster.protocol.fields import MAX_SERVER_ID

from .binlog import Binlog, BinlogPosition
from .binlog_sync import BinlogSync, BinlogSyncFailed
from .replicator import PeerSync, ReplicationContext, Wakeup, wanted_peers
from .sync_apply import ReplicaProgress, SyncApplier

if TYPE_CHECKING:
    import concurrent.futures

    from .handlers import StorageService
    from .reporter import TrackerReporter

log = logging.getLogger(__name__)

#: Seconds between checks of the group's member list.
RECONCILE_EVERY = 0.5
#: Seconds between syncs of the binlog.
BINLOG_SYNC_EVERY = 1.0


def sync_dir(base_path: str) -> str:
    """Where the binlog and the peers' mark files live (FastDFS's ``data/sync``)."""
    return os.path.join(base_path, "data", "sync")


class Replication:
    """See the module docstring."""

    def __init__(
        self,
        base_path: str,
        service: StorageService,
        executor: concurrent.futures.Executor,
        reporters: list[TrackerReporter],
        connect_timeout: float,
        network_timeout: float,
    ) -> None:
        self.directory = sync_dir(base_path)
        self.binlog = Binlog(self.directory)
        self.binlog_sync = BinlogSync(self.binlog, executor)
        self.service = service
        self.executor = executor
        self.reporters = reporters
        self.progress = ReplicaProgress()
        service.binlog = self.binlog
        service.enable_replication(SyncApplier(service, self.progress))
        service.member_ip = self._member_ip
        self._timeouts = (connect_timeout, network_timeout)
        self.me: tuple[str, int] = ("", 0)
        self.senders: dict[str, PeerSync] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakeups: list[Wakeup] = []
        self._background: list[asyncio.Task[None]] = []
        #: Senders of members no longer listed, cancelled but not yet ended.
        self._stopping: set[asyncio.Task[None]] = set()
        #: Uploads waiting for copies.
        self._copy_waiters: list[_CopyWaiter] = []
        self.binlog.on_append = self._appended

    # ---- the group --------------------------------------------------------------------------------
    @property
    def members(self) -> tuple[StorageBrief, ...]:
        """The group's members as the trackers last listed them (the longest list heard)."""
        return max((reporter.peers for reporter in self.reporters), key=len, default=())

    def my_id(self) -> str:
        for brief in self.members:
            if (brief.ip, brief.port) == self.me:
                return brief.storage_id
        return ""

    def _member_ip(self, storage_id: str) -> str | None:
        return next((brief.ip for brief in self.members if brief.storage_id == storage_id), None)

    def accepts(self, ip: str) -> bool:
        """Whether a connection from ``ip`` may send SYNC_* requests (a member of the group)."""
        return any(brief.ip == ip for brief in self.members)

    def sync_progress(self) -> tuple[SyncProgress, ...]:
        """What this storage has applied of each member's changes, by the IDs the trackers know."""
        members = [b for b in self.members if (b.ip, b.port) != self.me]
        report = []
        for key, timestamp in sorted(self.progress.latest().items()):
            storage_id = _member_id(members, key)
            if storage_id is not None:
                report.append(SyncProgress(storage_id, timestamp))
        return tuple(report)

    def stats(self) -> dict[str, int]:
        """The replication fields of the beat's counters block."""
        bytes_out = sum(sender.bytes_out for sender in self.senders.values())
        latest = self.progress.latest()
        return {
            "total_sync_in_bytes": self.progress.bytes_in,
            "success_sync_in_bytes": self.progress.bytes_in,
            "total_sync_out_bytes": bytes_out,
            "success_sync_out_bytes": bytes_out,
            "last_source_update": self.binlog.last_source_update,
            "last_sync_update": self.binlog.last_sync_update,
            "last_synced_timestamp": min(latest.values(), default=0),
        }

    # ---- copies before acknowledging -------------------------------------------------------------
    def reachable(self) -> int:
        """Peers this storage is connected to now."""
        return sum(1 for sender in self.senders.values() if sender.connected)

    def copies(self, position: BinlogPosition) -> int:
        """Peers that hold the record ending at ``position``: they have answered every record up to
        it, and did not refuse that one (a refused record is passed over, yet is not theirs)."""
        return sum(1 for sender in self.senders.values() if _holds(sender, position))

    async def copied(self, position: BinlogPosition, count: int, timeout: float) -> None:
        """Wait until ``count`` peers hold the record ending at ``position`` (and every one before it).

        :class:`~cluster.errors.Busy` as soon as too few peers could still take it (the others refused
        it or are not connected), :class:`~cluster.errors.RequestTimeout` after ``timeout``.
        """
        waiter = _CopyWaiter(position, count, asyncio.get_running_loop().create_future())
        waiter.settle(self.senders)
        if not waiter.future.done():
            self._copy_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except TimeoutError:
            raise RequestTimeout(f"the upload was not copied to {count} storage(s) in time") from None
        finally:
            if waiter in self._copy_waiters:
                self._copy_waiters.remove(waiter)

    def _progressed(self) -> None:
        """A peer answered more records, refused one, or its connection went: settle the uploads waiting
        for copies."""
        for waiter in self._copy_waiters:
            if not waiter.future.done():
                waiter.settle(self.senders)

    # ---- running ----------------------------------------------------------------------------------
    def start(self, ip: str, port: int, sync_binlog: bool) -> None:
        self.me = (ip, port)
        loop = asyncio.get_running_loop()
        self._background.append(loop.create_task(self._reconcile_forever(), name="replication"))
        if sync_binlog:
            self._background.append(loop.create_task(self._sync_binlog_forever(), name="binlog sync"))

    async def stop(self) -> None:
        tasks = [*self._background, *self._tasks.values(), *self._stopping]
        for task in tasks:
            # Python 3.11's wait_for can swallow a cancellation that meets a result: cancel until done.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._background.clear()
        self._tasks.clear()
        self.senders.clear()

    def close(self) -> None:
        """After the last client request: the binlog's last records go to disk."""
        self.binlog.close()

    def _appended(self) -> None:
        for wakeup in self._wakeups:
            wakeup.notify()

    async def _sync_binlog_forever(self) -> None:
        while True:
            await asyncio.sleep(BINLOG_SYNC_EVERY)
            with contextlib.suppress(BinlogSyncFailed):  # logged where it failed; tried again next time
                await self.binlog_sync.durable(self.binlog.end)

    async def _reconcile_forever(self) -> None:
        while True:
            self.reconcile()
            await asyncio.sleep(RECONCILE_EVERY)

    def reconcile(self) -> None:
        """Start a sender for each member without one, stop those of members no longer listed."""
        wanted = wanted_peers(self.members, self.me)
        loop = asyncio.get_running_loop()
        for key in list(self._tasks):
            task = self._tasks[key]
            if key not in wanted or task.done():
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("replication to %s stopped", key, exc_info=task.exception())
                task.cancel()
                del self._tasks[key]
                sender = self.senders.pop(key)
                self._wakeups.remove(sender.wakeup)
                if not task.done():
                    self._stopping.add(task)
        for task in list(self._stopping):
            # Python 3.11's wait_for can swallow a cancellation: cancel again until the task ends.
            if task.done():
                self._stopping.discard(task)
            else:
                task.cancel()
        for key, brief in wanted.items():
            existing = self.senders.get(key)
            if existing is not None:
                existing.update(brief)
                continue
            wakeup = Wakeup(loop)
            sender = PeerSync(self._context(), brief, wakeup, lambda: self.binlog.end)
            sender.on_progress = self._progressed
            self.senders[key] = sender
            self._wakeups.append(wakeup)
            self._tasks[key] = loop.create_task(sender.run(), name=f"replication to {key}")

    def _context(self) -> ReplicationContext:
        connect_timeout, network_timeout = self._timeouts
        return ReplicationContext(
            self.service.store,
            self.directory,
            self.executor,
            connect_timeout,
            network_timeout,
            self.my_id,
            self._ask_tracker,
            self._tell_trackers,
        )

    async def _ask_tracker(self, request: Request) -> bytes:
        errors: list[BaseException] = []
        for reporter in self.reporters:
            if reporter.joined:
                try:
                    return await reporter.call(request)
                except (OSError, TimeoutError, ClusterError, ProtocolError) as exc:
                    errors.append(exc)
        raise errors[0] if errors else ConnectionError("no tracker connection")

    async def _tell_trackers(self, request: Request) -> None:
        for reporter in self.reporters:
            if reporter.joined:
                try:
                    await reporter.call(request)
                except (OSError, TimeoutError, ClusterError, ProtocolError) as exc:
                    tracker = reporter.tracker
                    log.warning("tracker %s:%d: %s refused: %s", tracker.host, tracker.port, request.command.name, exc)


def _member_id(members: list[StorageBrief], source_key: str) -> str | None:
    """The tracker's ID of the member a file's source field names (a numeric ID, or an IPv4 address)."""
    for brief in members:
        if brief.storage_id == source_key:
            return brief.storage_id
    if source_key.isdigit() and 0 < int(source_key) <= MAX_SERVER_ID:
        return None
    for brief in members:
        if brief.ip == source_key:
            return brief.storage_id
    return None


def _holds(sender: PeerSync, position: BinlogPosition) -> bool:
    return sender.mark.position >= position and not sender.may_lack(position)


@dataclass(slots=True, eq=False)
class _CopyWaiter:
    """An upload waiting for copies of its record (the one ending at ``position``) on ``count`` peers."""

    position: BinlogPosition
    count: int
    future: asyncio.Future[None]
    #: Peers that refused the record: noted here, as a sender remembers only its latest refusals.
    refused_by: set[str] = field(default_factory=set)

    def settle(self, senders: dict[str, PeerSync]) -> None:
        """Done if enough peers hold the record; failed if too few could still take it."""
        position = self.position
        holding = possible = 0
        for key, sender in senders.items():
            if key in self.refused_by or sender.may_lack(position):
                self.refused_by.add(key)
            elif _holds(sender, position):
                holding += 1
                possible += 1
            elif sender.connected:
                possible += 1
        if holding >= self.count:
            self.future.set_result(None)
        elif possible < self.count:
            # EBUSY, as an upload refused at its start for too few reachable peers: the group cannot
            # make the copies now; the client's request was sound (not EINVAL, which would also close
            # its connection), and nothing timed out (not ETIMEDOUT).  The file stays here, unacknowledged,
            # and still goes to the peers that can take it.
            refused = f", {len(self.refused_by)} refused it" if self.refused_by else ""
            self.future.set_exception(
                Busy(f"the upload cannot be copied to {self.count} storage(s): {possible} could take it{refused}")
            )
