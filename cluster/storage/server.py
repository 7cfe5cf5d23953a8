"""The storage server: one :class:`trunkstore.Store`, its client connections, and its trackers.

:meth:`StorageServer.start` opens the store, listens, and starts one
:class:`~cluster.storage.reporter.TrackerReporter` per configured tracker in the background (a
tracker that is down never delays serving clients).  :meth:`StorageServer.stop` stops listening,
lets requests in progress finish, discards interrupted uploads, and closes the store.

The storage's IP (written into every file ID it creates, and its identity to the trackers) is
``bind_addr`` when that names one address; otherwise the local address the host would use to reach
the first tracker, as FastDFS takes the local address of its tracker connection.  It is found with
a UDP ``connect``, which sends nothing, so it needs no tracker to be up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import socket
import time
from typing import Any

from cluster.protocol import StorageBrief
from cluster.runtime import ConnectionServer
from trunkstore import Store

from .config import StorageConfig
from .connection import StorageConnection
from .handlers import StorageService
from .replication import Replication
from .reporter import Identity, JoinState, Timing, TrackerReporter, disk_usage, storage_stats, trunk_free_mb

log = logging.getLogger(__name__)

STATE_FILE = "storage_state.json"


class StorageServer:
    """A running storage server (see the module docstring)."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self.storage_ip = ""
        self.port = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(config.io_threads, thread_name_prefix="storage-io")
        self.store: Store | None = None
        self.reporters: list[TrackerReporter] = []
        self.connections = ConnectionServer(
            lambda _server: StorageConnection(self),
            max_connections=config.max_connections,
            network_timeout=config.network_timeout,
        )
        self.peak_connections = 0
        self._service: StorageService | None = None
        self.replication: Replication | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cleanups: set[concurrent.futures.Future[Any]] = set()

    @property
    def service(self) -> StorageService:
        assert self._service is not None, "the server is not started"
        return self._service

    @property
    def host(self) -> str:
        """The address clients reach this server at."""
        return self.config.bind_addr if _specific(self.config.bind_addr) else self.storage_ip

    @property
    def peers(self) -> tuple[StorageBrief, ...]:
        """The group's members as the trackers last listed them (the longest list heard), for replication."""
        return self.replication.members if self.replication is not None else ()

    def accepts_sync_from(self, ip: str) -> bool:
        """Whether a connection from ``ip`` may send SYNC_* requests: only the group's members."""
        return self.replication is not None and self.replication.accepts(ip)

    def track(self, cleanup: concurrent.futures.Future[Any]) -> None:
        """Remember background clean-up work so that :meth:`stop` waits for it."""
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        if _specific(config.bind_addr):
            self.storage_ip = socket.gethostbyname(config.bind_addr)
        else:
            self.storage_ip = local_ip_towards(config)
        store_config = config.store.replace(storage_ip=self.storage_ip)
        self.store = await loop.run_in_executor(self.executor, lambda: Store(config.base_path, store_config))
        self._service = StorageService(self.store)
        self.replication = Replication(
            config.base_path,
            self._service,
            self.executor,
            self.reporters,
            config.connect_timeout,
            config.network_timeout,
        )
        if config.ack_replicas:
            self._service.uploads_wait = True  # each upload's reply waits for its copies
        self.port = await self.connections.listen(config.listen_host, config.port)
        log.info(
            "storage of %s on %s:%d, store at %s (sync_mode=%s)",
            store_config.group_name,
            self.host,
            self.port,
            config.base_path,
            store_config.sync_mode,
        )
        self._start_reporters()
        self.replication.start(self.storage_ip, self.port, sync_binlog=store_config.sync_mode != "none")

    def _start_reporters(self) -> None:
        config = self.config
        store = self.store
        assert store is not None
        identity = Identity(
            group=config.group_name,
            ip=self.storage_ip,
            port=self.port,
            store_path_count=config.store.store_path_count,
            subdir_count_per_path=config.store.subdir_count_per_path,
            upload_priority=config.upload_priority,
            up_time=int(time.time()),
            trackers=config.tracker_servers,
            storage_id="" if config.store.storage_id is None else str(config.store.storage_id),
        )
        timing = Timing(
            config.connect_timeout, config.network_timeout, config.heart_beat_interval, config.stat_report_interval
        )
        loop = asyncio.get_running_loop()
        state = JoinState(os.path.join(config.base_path, STATE_FILE))
        replication = self.replication
        assert replication is not None
        for tracker in config.tracker_servers:
            reporter = TrackerReporter(
                tracker,
                identity,
                state,
                timing,
                lambda: storage_stats(store, self.connection_counts(), replication.stats()),
                lambda: disk_usage(store),
                replication.sync_progress,
                lambda: trunk_free_mb(store),
            )
            self.reporters.append(reporter)
            self._tasks.append(loop.create_task(reporter.run(), name=f"tracker {tracker.host}:{tracker.port}"))

    def connection_counts(self) -> tuple[int, int, int]:
        """``(limit, current, peak)`` client connections."""
        current = len(self.connections.connections)
        self.peak_connections = max(self.peak_connections, current)
        return self.config.max_connections, current, self.peak_connections

    async def stop(self, grace: float = 10.0) -> None:
        """Finish requests in progress (up to ``grace`` seconds), then close everything."""
        for task in self._tasks:
            # asyncio.wait_for can swallow a cancellation that meets a result: cancel until it ends.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._tasks.clear()
        if self.replication is not None:
            await self.replication.stop()
        await self.connections.stop(grace)
        await asyncio.sleep(0)  # let the connections closed last see connection_lost
        if self._cleanups:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(self._cleanups)], timeout=grace)
        await asyncio.to_thread(self.executor.shutdown, wait=True)
        if self.replication is not None:
            self.replication.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None


def _specific(host: str) -> bool:
    if not host:
        return False
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


def local_ip_towards(config: StorageConfig) -> str:
    """The local IPv4 address used to reach the first tracker; 127.0.0.1 without one."""
    for tracker in config.tracker_servers:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((tracker.host, tracker.port))
                address: str = probe.getsockname()[0]
                return address
        except OSError as exc:
            log.warning("cannot find a route to tracker %s:%d: %s", tracker.host, tracker.port, exc)
    return "127.0.0.1"
