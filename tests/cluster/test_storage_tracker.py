"""A storage and its trackers: joining, beats with counters, disk reports, trackers down or late."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from pathlib import Path

import pytest
from conftest import Cluster, storage_is_offered
from procs import ServerProcess, WireClient, start_storage, start_tracker, wait_for
from storage_wire import GROUP, delete, download, upload

from cluster.protocol import (
    HEADER_SIZE,
    Address,
    Command,
    DiskUsage,
    ListGroupsReply,
    ListStoragesReply,
    StatLayout,
    StorageJoinReply,
    StorageStat,
    StorageStats,
    StorageStatus,
    decode_header,
    encode_error,
    encode_reply,
)
from cluster.storage.reporter import Identity, JoinState, Timing, TrackerReporter

LIST_STORAGE = 92
LIST_ONE_GROUP = 90


def listed(tracker: ServerProcess) -> tuple[StorageStat, ...]:
    with WireClient(tracker.address) as wire:
        status, body = wire.call(LIST_STORAGE, GROUP.encode().ljust(16, b"\0"))
    if status != 0:
        return ()
    return ListStoragesReply.decode(body, StatLayout.V6_15).storages


def listed_storage(tracker: ServerProcess, storage: ServerProcess) -> StorageStat | None:
    return next((s for s in listed(tracker) if s.storage_port == storage.port), None)


def is_active(tracker: ServerProcess, storage: ServerProcess) -> bool:
    stat = listed_storage(tracker, storage)
    return stat is not None and stat.status == StorageStatus.ACTIVE


def reserve_port() -> tuple[socket.socket, int]:
    """A socket bound to a port but not listening, and the port: connections to it are refused, and
    no other server (of a test running beside this one) can take the port until the socket closes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return sock, port


def test_storage_joins_and_is_listed_active_with_its_disk(cluster: Cluster) -> None:
    wait_for(lambda: is_active(cluster.tracker, cluster.storage), message="ACTIVE in LIST_STORAGE")
    stat = listed_storage(cluster.tracker, cluster.storage)
    assert stat is not None
    assert stat.ip == "127.0.0.1" and stat.store_path_count == 1 and stat.subdir_count_per_path == 256
    wait_for(lambda: (s := listed_storage(cluster.tracker, cluster.storage)) and s.total_mb > 0, message="disk usage")


def listed_trunk_free_mb(tracker: ServerProcess) -> int:
    with WireClient(tracker.address) as wire:
        status, body = wire.call(LIST_ONE_GROUP, GROUP.encode().ljust(16, b"\0"))
    assert status == 0
    (group,) = ListGroupsReply.decode(body, StatLayout.V6_15).groups
    return group.trunk_free_mb


def test_the_group_listing_shows_the_free_space_in_trunk_containers(cluster: Cluster) -> None:
    wait_for(lambda: is_active(cluster.tracker, cluster.storage), message="ACTIVE in LIST_STORAGE")
    assert listed_trunk_free_mb(cluster.tracker) == 0  # no container yet
    with WireClient(cluster.storage.address) as wire:
        names = [upload(wire, bytes(300_000)) for _ in range(4)]  # 4 x 300 KB into one 4 MB container
    wait_for(lambda: listed_trunk_free_mb(cluster.tracker) == 2, message="trunk free 4 MB - 1.2 MB")
    with WireClient(cluster.storage.address) as wire:
        for name in names:
            assert delete(wire, name) == (0, b"")
    wait_for(lambda: listed_trunk_free_mb(cluster.tracker) == 4, message="the container wholly free")


def test_beats_carry_the_upload_counters(cluster: Cluster) -> None:
    with WireClient(cluster.storage.address) as wire:
        names = [upload(wire, b"counted %d" % i) for i in range(3)]
        assert download(wire, names[0]) == (0, b"counted 0")

    def counted() -> bool:
        stat = listed_storage(cluster.tracker, cluster.storage)
        return stat is not None and stat.stats.success_upload_count >= 3 and stat.stats.success_download_count >= 1

    wait_for(counted, message="the counters in a beat")
    stat = listed_storage(cluster.tracker, cluster.storage)
    assert stat is not None
    stats = stat.stats
    assert stats.success_file_write_count == stats.success_upload_count >= 3
    assert stats.success_file_read_count == stats.success_download_count >= 1
    assert stats.success_file_open_count == stats.success_file_read_count + stats.success_file_write_count


def test_storage_started_before_its_tracker_joins_when_it_comes_up(tmp_path: Path) -> None:
    reserved, port = reserve_port()
    with reserved, start_storage(tmp_path, [f"127.0.0.1:{port}"]) as storage:
        with WireClient(storage.address) as wire:  # serves clients with no tracker at all
            name = upload(wire, b"before the tracker")
        reserved.close()
        with start_tracker(tmp_path, port=port) as tracker:
            wait_for(lambda: storage_is_offered(tracker, storage), message="the storage to join late")
        with WireClient(storage.address) as wire:
            assert download(wire, name) == (0, b"before the tracker")


@pytest.mark.parametrize("dead_kind", ["refusing", "silent"])
def test_a_dead_tracker_does_not_block_the_others(tmp_path: Path, dead_kind: str) -> None:
    """A tracker that refuses connections, or accepts them and never answers, delays nothing."""
    reserved, port = reserve_port()
    if dead_kind == "silent":
        reserved.listen()  # the kernel accepts the connections; nothing reads or answers them
    dead = f"127.0.0.1:{port}"
    with reserved, start_tracker(tmp_path) as tracker, start_storage(tmp_path, [dead, tracker]) as storage:
        wait_for(lambda: is_active(tracker, storage), message="ACTIVE on the live tracker")
        with WireClient(storage.address) as wire:
            assert upload(wire, b"served").startswith("M00/")


def test_storage_rejoins_a_restarted_tracker(tmp_path: Path) -> None:
    tracker = start_tracker(tmp_path)
    port, base = tracker.port, tracker.base_path
    with start_storage(tmp_path, [tracker]) as storage:
        wait_for(lambda: is_active(tracker, storage), message="ACTIVE")
        assert tracker.stop() == 0
        with start_tracker(tmp_path, port=port, base_path=base) as again:
            wait_for(lambda: is_active(again, storage), message="ACTIVE again after the tracker restarted")


def test_a_reporter_stops_when_its_cancellation_meets_a_failure(tmp_path: Path) -> None:
    """asyncio.wait_for, cancelled while the connect it waits for fails, raises the failure and drops
    the cancellation; the reporter must still end (a storage stopped at once after starting hung)."""

    class Reporter(TrackerReporter):
        async def _connect(self) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)  # the cancellation arrives here and is swallowed, as wait_for does
            raise ConnectionRefusedError("refused")

    identity = Identity("group1", "127.0.0.1", 23000, 1, 256, 0, 0, ())
    reporter = Reporter(
        Address("127.0.0.1", 9), identity, JoinState(str(tmp_path / "state.json")), Timing(1, 1, 0.1, 1),
        stats=lambda: pytest.fail("no beat without a connection"), usage=tuple,
    )  # fmt: skip

    async def run() -> None:
        await asyncio.wait_for(reporter.run(), timeout=10)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())


def test_a_tracker_that_refuses_trunk_free_reports_keeps_the_storage_joined(tmp_path: Path) -> None:
    """A FastDFS tracker takes STORAGE_REPORT_TRUNK_FREE only from its group's trunk server and answers
    EINVAL otherwise: the reporter stops sending it there and goes on beating on the same connection."""
    received: list[int] = []
    connections: list[int] = []

    async def fake_tracker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = decode_header(await reader.readexactly(HEADER_SIZE))
                await reader.readexactly(header.pkg_len)
                received.append(header.cmd)
                if header.cmd == Command.STORAGE_JOIN:
                    writer.write(encode_reply(StorageJoinReply(StorageStatus.ACTIVE).encode_body()))
                elif header.cmd == Command.STORAGE_REPORT_TRUNK_FREE:
                    writer.write(encode_error(errno.EINVAL))
                else:
                    writer.write(encode_reply())
                await writer.drain()

    async def run() -> None:
        server = await asyncio.start_server(fake_tracker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        identity = Identity("group1", "127.0.0.1", 23000, 1, 256, 0, 0, ())
        reporter = TrackerReporter(
            Address("127.0.0.1", port), identity, JoinState(str(tmp_path / "state.json")),
            Timing(5, 5, 0.01, 0.01), stats=StorageStats, usage=lambda: (DiskUsage(100, 50),),
            trunk_free=lambda: 7,
        )  # fmt: skip
        task = asyncio.create_task(reporter.run())
        try:
            for _ in range(500):
                if received.count(Command.STORAGE_REPORT_DISK_USAGE) >= 5:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            server.close()
            await server.wait_closed()

    asyncio.run(run())
    assert received.count(Command.STORAGE_REPORT_DISK_USAGE) >= 5
    assert received.count(Command.STORAGE_REPORT_TRUNK_FREE) == 1
    assert received.count(Command.STORAGE_JOIN) == 1 and len(connections) == 1
