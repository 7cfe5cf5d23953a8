"""The tracker server: one :class:`TrackerConnection` per socket around the sans-IO codec, and
:class:`TrackerServer`, which owns the registry, the offline sweep and the state saver.

Every request is answered at once, in one write, without a task or a future: the registry is
in memory and the selection rules cost O(storages in a group).  Errors are answered with a
header-only reply carrying the errno and the connection stays open, as FastDFS trackers do; only
a frame that cannot be decoded (or whose ``pkg_len`` is above ``max_pkg_size``, refused before its
body is read) closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cluster.errors import AccessDenied, ClusterError, InvalidRequest, NotFound, status_for_exception
from cluster.protocol import Address as WireAddress
from cluster.protocol import (
    BeatRequest,
    Command,
    DeleteStorageRequest,
    EmptyReply,
    FetchTargetReply,
    FetchTargetsReply,
    Frame,
    FrameDecoder,
    ListAllGroupsRequest,
    ListGroupsReply,
    ListOneGroupRequest,
    ListStorageRequest,
    ListStoragesReply,
    ParameterReply,
    ParameterRequest,
    ProtocolError,
    QueryFetchAllRequest,
    QueryFetchOneRequest,
    QueryStoreAllRequest,
    QueryStoreOneRequest,
    QueryUpdateRequest,
    ReportDiskUsageRequest,
    ReportStatusRequest,
    ReportTrunkFreeRequest,
    StorageJoinRequest,
    StoreTargetReply,
    StoreTargetsReply,
    SyncDestRequest,
    SyncNotifyRequest,
    SyncReportRequest,
    SyncSrcRequest,
    encode_error,
    parse_request,
)
from cluster.runtime import Connection, ConnectionServer
from trunkstore.errors import TrunkstoreError

from . import listing, persist, selection
from .config import StorePath as StorePathRule
from .config import TrackerConfig
from .members import Clock, Storage, SystemClock
from .registry import Registry

log = logging.getLogger(__name__)

#: How often the state is written when it changed, in seconds.
SAVE_INTERVAL = 0.5

_EMPTY_REPLY = EmptyReply().encode()


class TrackerConnection(Connection):
    """One client's or storage's connection; a storage connection is bound to its storage by JOIN."""

    def __init__(self, server: ConnectionServer, tracker: TrackerServer) -> None:
        super().__init__(server)
        self.tracker = tracker
        self.decoder = FrameDecoder(tracker.config.max_pkg_size)
        self.peer_ip = ""
        self.storage: Storage | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer_ip = str(peer[0])
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.storage is not None:
            self.tracker.storage_disconnected(self, self.storage)

    def feed(self, data: bytes) -> None:
        self.decoder.feed(data)

    def next_event(self) -> Frame | None:
        return self.decoder.next_frame()

    @property
    def idle(self) -> bool:
        return self.decoder.idle

    def handle(self, event: object) -> Awaitable[Any] | None:
        assert isinstance(event, Frame)
        reply = self.tracker.answer(self, event)
        self.served += 1
        if reply is None:
            self.close()
        else:
            self.send(reply)
        return None


Handler = Callable[[TrackerConnection, Any], bytes]


class TrackerServer:
    """A tracker: listening socket, registry, and the tasks that expire storages and save state."""

    def __init__(self, config: TrackerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.registry = Registry(config.check_active_interval, self.clock)
        self.connections = ConnectionServer(
            lambda server: TrackerConnection(server, self),
            max_connections=config.max_connections,
            network_timeout=config.network_timeout,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._saving: asyncio.Future[None] | None = None
        #: Each joined storage's latest connection (by storage key): only its loss takes it offline.
        self._storage_links: dict[str, TrackerConnection] = {}
        self._handlers: dict[int, tuple[Handler, bool]] = {
            Command.QUERY_STORE_WITHOUT_GROUP_ONE: (self._store_one, False),
            Command.QUERY_STORE_WITH_GROUP_ONE: (self._store_one, False),
            Command.QUERY_STORE_WITHOUT_GROUP_ALL: (self._store_all, False),
            Command.QUERY_STORE_WITH_GROUP_ALL: (self._store_all, False),
            Command.QUERY_FETCH_ONE: (self._fetch_one, False),
            Command.QUERY_UPDATE: (self._update_one, False),
            Command.QUERY_FETCH_ALL: (self._fetch_all, False),
            Command.SERVER_LIST_ALL_GROUPS: (self._list_groups, False),
            Command.SERVER_LIST_ONE_GROUP: (self._list_groups, False),
            Command.SERVER_LIST_STORAGE: (self._list_storages, False),
            Command.SERVER_DELETE_STORAGE: (self._delete_storage, False),
            Command.ACTIVE_TEST: (lambda conn, request: _EMPTY_REPLY, False),
            Command.STORAGE_PARAMETER_REQ: (self._parameters, False),
            Command.STORAGE_JOIN: (self._join, False),
            Command.STORAGE_BEAT: (self._beat, True),
            Command.STORAGE_REPORT_DISK_USAGE: (self._disk_usage, True),
            Command.STORAGE_REPORT_TRUNK_FREE: (self._trunk_free, True),
            Command.STORAGE_SYNC_REPORT: (self._sync_report, True),
            Command.STORAGE_SYNC_SRC_REQ: (self._sync_src, True),
            Command.STORAGE_SYNC_DEST_REQ: (self._sync_dest, True),
            Command.STORAGE_SYNC_NOTIFY: (self._sync_notify, True),
            Command.STORAGE_REPORT_STATUS: (self._report_status, True),
        }

    # ---- life cycle ------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the saved state, if any; an unreadable file is moved aside and the tracker starts
        empty (its storages join again and tell it everything)."""
        path = self.config.state_path
        try:
            if persist.read_state(path, self.registry):
                count = sum(1 for _ in self.registry.storages())
                log.info("loaded %d groups and %d storages from %s", len(self.registry.groups), count, path)
        except persist.StateError as exc:
            aside = path.with_name(path.name + ".corrupt")
            log.error("%s; moved to %s, starting with no storages", exc, aside)
            with contextlib.suppress(OSError):
                path.replace(aside)

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Load the state, listen, start the background tasks; returns the bound port."""
        self.load()
        bound = await self.connections.listen(
            host if host is not None else self.config.listen_host, self.config.port if port is None else port
        )
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._expire_loop()), loop.create_task(self._save_loop())]
        return bound

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening and serving, then save the state."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._saving is not None:  # a write in a thread goes on after its task is cancelled
            with contextlib.suppress(OSError):
                await self._saving
        await self.connections.stop(grace)
        self.save_now()

    def save_now(self) -> None:
        self.registry.dirty = False
        persist.write_state(self.config.state_path, persist.snapshot(self.registry))

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if not self.registry.dirty:
                continue
            self.registry.dirty = False
            state = persist.snapshot(self.registry)
            self._saving = asyncio.ensure_future(asyncio.to_thread(persist.write_state, self.config.state_path, state))
            try:
                await asyncio.shield(self._saving)
            except OSError as exc:
                log.error("cannot save the tracker state to %s: %s", self.config.state_path, exc)
                self.registry.dirty = True
            finally:
                if self._saving.done():
                    self._saving = None

    async def _expire_loop(self) -> None:
        period = min(max(self.config.check_active_interval / 4, 0.05), 1.0)
        while True:
            await asyncio.sleep(period)
            for storage in self.registry.expire():
                log.warning("storage %s of %s is OFFLINE: no beat for %.1f s", storage.key, storage.group,
                            self.config.check_active_interval)  # fmt: skip

    # ---- requests --------------------------------------------------------------------------------
    def answer(self, conn: TrackerConnection, frame: Frame) -> bytes | None:
        """The reply to one request frame; None for QUIT (close without a reply)."""
        if frame.cmd == Command.QUIT:
            return None
        entry = self._handlers.get(frame.cmd)
        try:
            if entry is None:
                raise InvalidRequest(f"command {frame.cmd} is not a tracker command")
            handler, needs_join = entry
            if needs_join and conn.storage is None:
                raise AccessDenied(f"command {frame.cmd} before STORAGE_JOIN")
            return handler(conn, parse_request(frame.cmd, frame.body, frame.status))
        except (ClusterError, ProtocolError, TrunkstoreError) as exc:
            status = status_for_exception(exc)
            log.debug("%s: cmd %d refused (%s): %s", conn.peer, frame.cmd, errno.errorcode.get(status), exc)
            return encode_error(status)

    def _store_one(self, conn: TrackerConnection, request: QueryStoreOneRequest) -> bytes:
        group, storage, path = selection.store_one(self.registry, self.config, request.group)
        return StoreTargetReply(group.name, storage.ip, storage.port, path).encode()

    def _store_all(self, conn: TrackerConnection, request: QueryStoreAllRequest) -> bytes:
        group, storages, path = selection.store_all(self.registry, self.config, request.group)
        servers = tuple(WireAddress(s.ip, s.port) for s in storages)
        return StoreTargetsReply(group.name, servers, path).encode()

    def _fetch_one(self, conn: TrackerConnection, request: QueryFetchOneRequest) -> bytes:
        now = self.clock.wall()
        storage = selection.fetch_one(self.registry, self.config, request.group, request.filename, now)
        return FetchTargetReply(request.group, storage.ip, storage.port).encode()

    def _update_one(self, conn: TrackerConnection, request: QueryUpdateRequest) -> bytes:
        storage = selection.update_one(self.registry, self.config, request.group, request.filename)
        return FetchTargetReply(request.group, storage.ip, storage.port).encode()

    def _fetch_all(self, conn: TrackerConnection, request: QueryFetchAllRequest) -> bytes:
        now = self.clock.wall()
        port, ips = selection.fetch_all(self.registry, self.config, request.group, request.filename, now)
        return FetchTargetsReply(request.group, port, tuple(ips)).encode()

    def _list_groups(self, conn: TrackerConnection, request: ListAllGroupsRequest | ListOneGroupRequest) -> bytes:
        reserve = self.config.reserved_storage_space
        if isinstance(request, ListOneGroupRequest):
            groups = [self.registry.group(request.group)]
        else:
            groups = list(self.registry.ordered_groups())
        stats = tuple(listing.group_stat(g, reserve) for g in groups)
        return ListGroupsReply(stats, self.config.stat_layout).encode()

    def _list_storages(self, conn: TrackerConnection, request: ListStorageRequest) -> bytes:
        group = self.registry.group(request.group)
        members = listing.storages_matching(group, request.storage_id)
        if request.storage_id is not None and not members:
            raise NotFound(f"no storage {request.storage_id!r} in group {group.name!r}")
        reserve, layout = self.config.reserved_storage_space, self.config.stat_layout
        stats = tuple(listing.storage_stat(s, reserve, layout) for s in members)
        return ListStoragesReply(stats, layout).encode()

    def _delete_storage(self, conn: TrackerConnection, request: DeleteStorageRequest) -> bytes:
        storage = self.registry.delete_storage(
            request.group, request.storage_id, lambda storage: storage.key in self._storage_links
        )
        log.warning("storage %s (id %s) deleted from %s at the request of %s", storage.key, storage.id,
                    storage.group, conn.peer_ip)  # fmt: skip
        return _EMPTY_REPLY

    def _parameters(self, conn: TrackerConnection, request: ParameterRequest) -> bytes:
        return ParameterReply(self.config.storage_parameters()).encode()

    # ---- storage commands ------------------------------------------------------------------------
    def _join(self, conn: TrackerConnection, request: StorageJoinRequest) -> bytes:
        storage, reply = self.registry.join(request, conn.peer_ip)
        if conn.storage is not storage:
            log.info("storage %s (id %s) joined %s: %s", storage.key, storage.id, storage.group, storage.status.name)
        conn.storage = storage
        self._storage_links[storage.key] = conn
        return reply.encode()

    def storage_disconnected(self, conn: TrackerConnection, storage: Storage) -> None:
        """``conn``, a storage's connection, closed; unless it has joined again on a newer one,
        it is OFFLINE from now on, so that no client is sent to a storage that may be gone."""
        if self._storage_links.get(storage.key) is not conn:
            return
        del self._storage_links[storage.key]
        if self.registry.disconnected(storage):
            log.warning("storage %s of %s is OFFLINE: its connection closed", storage.key, storage.group)

    def _joined(self, conn: TrackerConnection) -> Storage:
        assert conn.storage is not None  # checked before the handler runs
        return conn.storage

    def _beat(self, conn: TrackerConnection, request: BeatRequest) -> bytes:
        return self.registry.beat(self._joined(conn), request.stats).encode()

    def _disk_usage(self, conn: TrackerConnection, request: ReportDiskUsageRequest) -> bytes:
        most_free = self.config.store_path is StorePathRule.MOST_FREE
        return self.registry.report_disk_usage(self._joined(conn), request.paths, most_free).encode()

    def _trunk_free(self, conn: TrackerConnection, request: ReportTrunkFreeRequest) -> bytes:
        self.registry.report_trunk_free(self._joined(conn), request.trunk_free_mb)
        return _EMPTY_REPLY

    def _sync_report(self, conn: TrackerConnection, request: SyncReportRequest) -> bytes:
        return self.registry.sync_report(self._joined(conn), request.peers).encode()

    def _sync_src(self, conn: TrackerConnection, request: SyncSrcRequest) -> bytes:
        return self.registry.sync_src_request(self._joined(conn), request.group, request.dest_id).encode()

    def _sync_dest(self, conn: TrackerConnection, request: SyncDestRequest) -> bytes:
        return self.registry.sync_dest_request(self._joined(conn)).encode()

    def _sync_notify(self, conn: TrackerConnection, request: SyncNotifyRequest) -> bytes:
        self.registry.sync_notify(self._joined(conn), request.src_id, request.until_timestamp)
        return _EMPTY_REPLY

    def _report_status(self, conn: TrackerConnection, request: ReportStatusRequest) -> bytes:
        self.registry.report_status(self._joined(conn), request.group, request.brief)
        return _EMPTY_REPLY
