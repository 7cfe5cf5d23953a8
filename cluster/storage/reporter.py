"""The storage's side of its trackers: join, beat, report disk usage, reconnect.

One :class:`TrackerReporter` task per configured tracker, independent of the others and of the
clients being served: a tracker that is down or slow only delays its own task, which reconnects
with exponential backoff.  On each connection (FastDFS's ``tracker_report_thread``)::

    STORAGE_JOIN                     who and where this storage is; the reply holds its status
    STORAGE_BEAT                     every heart_beat_interval; with the 348-byte counters block
                                     every stat_report_interval (and right after joining)
    STORAGE_REPORT_DISK_USAGE        every stat_report_interval: total and free MB per store path
    STORAGE_REPORT_TRUNK_FREE        with it: MB free inside this storage's own trunk containers
    STORAGE_SYNC_REPORT              after a beat, when replication from peers has progressed

The replies to beats and reports may list the group's members (``StorageBrief``); the latest list
is kept in :attr:`TrackerReporter.peers` for replication, which also asks the tracker questions of
its own on the same connection (:meth:`TrackerReporter.call`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cluster.errors import ClusterError, ConnectionLost, InvalidRequest, error_for_status
from cluster.protocol import (
    HEADER_SIZE,
    Address,
    BeatRequest,
    ChangeFlag,
    Command,
    DiskUsage,
    EmptyReply,
    ProtocolError,
    ReportDiskUsageRequest,
    ReportTrunkFreeRequest,
    Request,
    StorageBrief,
    StorageJoinReply,
    StorageJoinRequest,
    StorageStats,
    StorageStatus,
    SyncProgress,
    SyncReportRequest,
    TrackerChangesReply,
    decode_header,
)
from trunkstore import Store
from trunkstore.diskio import write_file_atomic

log = logging.getLogger(__name__)

MIB = 1 << 20
#: Largest reply body accepted from a tracker (a beat reply lists a group's members: 67 bytes each).
MAX_REPLY = 1 << 20
VERSION = "6.16"


@dataclass(frozen=True, slots=True)
class Identity:
    """What a storage tells its trackers about itself when it joins."""

    group: str
    ip: str
    port: int
    store_path_count: int
    subdir_count_per_path: int
    upload_priority: int
    up_time: int
    trackers: tuple[Address, ...]
    version: str = VERSION
    #: The numeric storage ID written into this storage's file IDs, announced as its ID; else its IP.
    storage_id: str = ""


class JoinState:
    """What a storage remembers of its trackers across restarts (FastDFS's ``.data_init_flag``).

    ``join_time``: when it first started.  ``sync_old_done``: a tracker has let it serve (ONLINE or
    ACTIVE), so it no longer joins as a new storage needing a copy of its group's files
    (``init_flag``).  ``status``: the last status a tracker gave it, announced when joining again.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            self.join_time = int(saved["join_time"])
            self.sync_old_done = bool(saved.get("sync_old_done", False))
            self.status = StorageStatus(int(saved.get("status", StorageStatus.INIT)))
        except (OSError, ValueError, KeyError, TypeError):
            self.join_time = int(time.time())
            self.sync_old_done = False
            self.status = StorageStatus.INIT
            self._save()

    @property
    def init_flag(self) -> bool:
        return not self.sync_old_done

    def record(self, status: StorageStatus) -> None:
        done = self.sync_old_done or status in (StorageStatus.ONLINE, StorageStatus.ACTIVE)
        if (status, done) != (self.status, self.sync_old_done):
            self.status, self.sync_old_done = status, done
            self._save()

    def _save(self) -> None:
        record = {"join_time": self.join_time, "sync_old_done": self.sync_old_done, "status": int(self.status)}
        try:
            write_file_atomic(self.path, json.dumps(record).encode())
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)


@dataclass(frozen=True, slots=True)
class Timing:
    connect_timeout: float
    network_timeout: float
    heart_beat_interval: float
    stat_report_interval: float


def disk_usage(store: Store) -> tuple[DiskUsage, ...]:
    """Total and free MB of each store path, as the file system reports them.

    As FastDFS's storage does: the tracker applies its own ``reserved_storage_space`` to these
    figures when it picks a storage, and the store refuses uploads into its own reserve; taking
    the reserve off here as well would count it twice.
    """
    usage = []
    for directory in store.layout.store_dirs:
        st = os.statvfs(directory)
        usage.append(DiskUsage(st.f_blocks * st.f_frsize // MIB, st.f_bavail * st.f_frsize // MIB))
    return tuple(usage)


def trunk_free_mb(store: Store) -> int:
    """MB free inside the store's own trunk containers (not the replicas of its peers' containers,
    which their owners report)."""
    return store.stats().trunk_own_free_bytes // MIB


def storage_stats(
    store: Store, connections: tuple[int, int, int], replication: Mapping[str, int] | None = None
) -> StorageStats:
    """The beat's counters block from the store's counters, ``(limit, current, peak)`` connections and
    the replication fields (:meth:`cluster.storage.replication.Replication.stats`)."""
    c = store.counters.snapshot()
    alloc, current, peak = connections
    # The file counters count requests that read or wrote a file's bytes (a download; an upload, append
    # or modify): trunk files are read and written in their open container, so there is no open per
    # request to count, and one request is one read or write of the file however it is split.
    reads = (c["download_total"], c["download_ok"])
    writes = (
        c["upload_total"] + c["append_total"] + c["modify_total"],
        c["upload_ok"] + c["append_ok"] + c["modify_ok"],
    )
    return StorageStats(
        alloc_count=alloc,
        current_count=current,
        max_count=peak,
        total_upload_count=c["upload_total"],
        success_upload_count=c["upload_ok"],
        total_append_count=c["append_total"],
        success_append_count=c["append_ok"],
        total_modify_count=c["modify_total"],
        success_modify_count=c["modify_ok"],
        total_truncate_count=c["truncate_total"],
        success_truncate_count=c["truncate_ok"],
        total_set_meta_count=c["set_meta_total"],
        success_set_meta_count=c["set_meta_ok"],
        total_delete_count=c["delete_total"],
        success_delete_count=c["delete_ok"],
        total_download_count=c["download_total"],
        success_download_count=c["download_ok"],
        total_get_meta_count=c["get_meta_total"],
        success_get_meta_count=c["get_meta_ok"],
        total_upload_bytes=c["upload_bytes"],
        success_upload_bytes=c["upload_bytes"],
        total_append_bytes=c["append_bytes"],
        success_append_bytes=c["append_bytes"],
        total_modify_bytes=c["modify_bytes"],
        success_modify_bytes=c["modify_bytes"],
        total_download_bytes=c["download_bytes"],
        success_download_bytes=c["download_bytes"],
        total_file_open_count=reads[0] + writes[0],
        success_file_open_count=reads[1] + writes[1],
        total_file_read_count=reads[0],
        success_file_read_count=reads[1],
        total_file_write_count=writes[0],
        success_file_write_count=writes[1],
        last_heart_beat_time=int(time.time()),
        **(replication or {}),
    )


def _stop_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class TrackerReporter:
    """Keeps this storage joined to one tracker, for as long as the task runs."""

    def __init__(
        self,
        tracker: Address,
        identity: Identity,
        state: JoinState,
        timing: Timing,
        stats: Callable[[], StorageStats],
        usage: Callable[[], tuple[DiskUsage, ...]],
        sync_progress: Callable[[], tuple[SyncProgress, ...]] = tuple,
        trunk_free: Callable[[], int] | None = None,
    ) -> None:
        self.tracker = tracker
        self.identity = identity
        self.state = state
        self.timing = timing
        self._stats = stats
        self._usage = usage
        self._sync_progress = sync_progress
        self._trunk_free = trunk_free
        self._reported_progress: tuple[SyncProgress, ...] = ()
        #: One request at a time on the connection: the beat loop and replication share it.
        self._calling = asyncio.Lock()
        #: The status the tracker last gave this storage (NONE before the first join).
        self.status = StorageStatus.NONE
        #: The group's members as the tracker last listed them.
        self.peers: tuple[StorageBrief, ...] = ()
        self.joined = False
        self.beats = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        """Join, beat and report; on any failure reconnect with backoff.  Runs until cancelled."""
        backoff = initial = min(0.1, self.timing.heart_beat_interval)
        limit = max(1.0, min(self.timing.heart_beat_interval, 10.0))
        failing = False
        while True:
            try:
                await self._connect()
                await self._join()
                backoff = initial
                if failing:
                    log.info("tracker %s:%d: joined again", self.tracker.host, self.tracker.port)
                failing = False
                await self._beat_forever()
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, TimeoutError, ProtocolError, ClusterError) as exc:
                if _stop_requested():
                    # asyncio.wait_for hands back a failure that comes at the moment of a cancellation
                    # and swallows the cancellation: without this the task would go on retrying.
                    raise asyncio.CancelledError from exc
                if not failing:
                    log.warning("tracker %s:%d: %s; retrying", self.tracker.host, self.tracker.port, exc or type(exc))
                failing = True
            finally:
                self.joined = False
                self._close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, limit)

    # ---- one connection ---------------------------------------------------------------------------
    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.tracker.host, self.tracker.port), self.timing.connect_timeout
        )

    def _close(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    async def _join(self) -> None:
        me = self.identity
        request = StorageJoinRequest(
            group=me.group,
            storage_id=me.storage_id or me.ip,
            storage_port=me.port,
            store_path_count=me.store_path_count,
            subdir_count_per_path=me.subdir_count_per_path,
            upload_priority=me.upload_priority,
            join_time=self.state.join_time,
            up_time=me.up_time,
            version=me.version,
            init_flag=self.state.init_flag,
            status=self.state.status,
            current_tracker_ip=self.tracker.host,
            trackers=me.trackers,
        )
        self._reported_progress = ()
        reply = StorageJoinReply.decode(await self.call(request))
        self.status = reply.status
        self.state.record(reply.status)
        self.joined = True
        log.info("tracker %s:%d: joined as %s", self.tracker.host, self.tracker.port, reply.status.name)

    async def _beat_forever(self) -> None:
        timing = self.timing
        loop = asyncio.get_running_loop()
        last_report = float("-inf")
        while True:
            now = loop.time()
            if now - last_report >= timing.stat_report_interval:
                last_report = now
                # Space first: the report that makes a tracker offer this storage carries its free space.
                await self._changes(ReportDiskUsageRequest(self._usage()))
                await self._report_trunk_free()
                await self._changes(BeatRequest(self._stats()))
            else:
                await self._changes(BeatRequest())
            progress = self._sync_progress()
            if progress and progress != self._reported_progress:
                await self._changes(SyncReportRequest(progress))
                self._reported_progress = progress
            self.beats += 1
            await asyncio.sleep(timing.heart_beat_interval)

    async def _report_trunk_free(self) -> None:
        if self._trunk_free is None:
            return
        try:
            EmptyReply.decode(await self.call(ReportTrunkFreeRequest(self._trunk_free())))
        except InvalidRequest as exc:
            # A FastDFS tracker takes this report only from its group's trunk server: stop sending it
            # there rather than have every stat report fail.
            log.info("tracker %s:%d: %s; trunk free space not reported", self.tracker.host, self.tracker.port, exc)
            self._trunk_free = None

    async def _changes(self, request: Request) -> None:
        reply = TrackerChangesReply.decode(await self.call(request))
        if reply.flags & ChangeFlag.GROUP_CHANGED or reply.briefs:
            self.peers = reply.briefs

    async def call(self, request: Request) -> bytes:
        """Send ``request`` on this tracker connection and return the reply body."""
        async with self._calling:
            return await self._call(request)

    async def _call(self, request: Request) -> bytes:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise ConnectionLost("not connected")
        writer.write(request.encode())
        await asyncio.wait_for(writer.drain(), self.timing.network_timeout)
        header = decode_header(await asyncio.wait_for(reader.readexactly(HEADER_SIZE), self.timing.network_timeout))
        if header.cmd != Command.RESPONSE or header.pkg_len > MAX_REPLY:
            raise ConnectionLost(f"bad reply header {header}")
        body = await asyncio.wait_for(reader.readexactly(header.pkg_len), self.timing.network_timeout)
        if header.status:
            raise error_for_status(header.status, f"{request.command.name} refused by the tracker")
        return body
