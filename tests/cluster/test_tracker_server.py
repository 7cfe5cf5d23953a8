"""The tracker server in-process, over real loopback sockets: the event loop runs in a thread and
the test speaks raw frames to it."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import WireClient, wait_for
from tracker_helpers import FakeStorage, file_name, group_field, store_port

from cluster.protocol import (
    DeleteStorageRequest,
    FetchTargetReply,
    FetchTargetsReply,
    ListGroupsReply,
    ListStoragesReply,
    ParameterReply,
    StatLayout,
    StorageStats,
    StorageStatus,
    StoreTargetsReply,
    SyncSourceReply,
)
from cluster.runtime import new_event_loop
from cluster.tracker.config import ReservedSpace, TrackerConfig
from cluster.tracker.server import TrackerServer


class RunningTracker:
    def __init__(self, config: TrackerConfig) -> None:
        self.loop = new_event_loop()
        self.server = TrackerServer(config)
        self.port = 0
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server's loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)
        return future.result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _call(fn: Any) -> Any:
    return fn()


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[RunningTracker]:
    config = TrackerConfig(
        base_path=str(tmp_path), check_active_interval=0.5, reserved_storage_space=ReservedSpace.parse("0%")
    )
    running = RunningTracker(config)
    try:
        yield running
    finally:
        running.stop()


def test_a_storage_joins_beats_and_is_offered(tracker: RunningTracker) -> None:
    with WireClient(tracker.address) as storage_wire, WireClient(tracker.address) as client:
        assert client.call(101) == (2, b"")  # no group yet: ENOENT
        storage = FakeStorage(storage_wire, paths=2)
        assert storage.join().status is StorageStatus.ONLINE
        changes = storage.beat()
        assert [b.status for b in changes.briefs] == [StorageStatus.ACTIVE]
        storage.report(free_mb=500)
        status, body = client.call(101)
        assert status == 0 and len(body) == 40 and store_port(body) == 23000
        status, body = client.call(104, group_field())
        assert status == 0 and len(body) == 40
        status, body = client.call(106)
        assert StoreTargetsReply.decode(body).servers[0].port == 23000
        assert client.call(104, group_field("nogroup")) == (2, b"")
        status, body = client.call(102, group_field() + file_name().encode())
        assert status == 0 and len(body) == 39 and FetchTargetReply.decode(body).port == 23000
        status, body = client.call(103, group_field() + file_name().encode())
        assert status == 0 and len(body) == 39
        status, body = client.call(105, group_field() + file_name().encode())
        assert FetchTargetsReply.decode(body).ips == ("127.0.0.1",)
        assert client.call(102, group_field() + b"M00/00/00/nonsense")[0] == 22
        tracker.call(tracker.server.registry._check)


def test_listings_in_the_configured_layout(tracker: RunningTracker) -> None:
    with WireClient(tracker.address) as storage_wire, WireClient(tracker.address) as client:
        FakeStorage(storage_wire, port=23000).activate(free_mb=700)
        status, body = client.call(91)
        assert status == 0 and len(body) == 113
        (group,) = ListGroupsReply.decode(body, StatLayout.V6_15).groups
        assert (group.group_name, group.storage_count, group.readable_count, group.free_mb) == ("group1", 1, 1, 700)
        assert group.trunk_free_mb == 0
        status, body = client.call(90, group_field())
        assert status == 0 and len(body) == 113
        status, body = client.call(92, group_field())
        assert status == 0 and len(body) == 487
        (stat,) = ListStoragesReply.decode(body, StatLayout.V6_15).storages
        assert stat.status is StorageStatus.ACTIVE and stat.id == "127.0.0.1" and stat.storage_port == 23000
        assert client.call(92, group_field() + b"127.0.0.1")[0] == 0
        assert client.call(92, group_field() + b"10.1.1.1") == (2, b"")
        assert client.call(90, group_field("none")) == (2, b"")


def test_trunk_free_reports_add_up_over_the_active_members(tracker: RunningTracker) -> None:
    with (
        WireClient(tracker.address) as first_wire,
        WireClient(tracker.address) as second_wire,
        WireClient(tracker.address) as client,
    ):
        first, second = FakeStorage(first_wire, port=23000), FakeStorage(second_wire, port=23001)
        first.activate()
        second.activate()
        first.report_trunk_free(40)
        second.report_trunk_free(23)

        def listed() -> int:
            status, body = client.call(90, group_field())
            assert status == 0
            (group,) = ListGroupsReply.decode(body, StatLayout.V6_15).groups
            return group.trunk_free_mb

        assert listed() == 63
        second.report_trunk_free(3)  # a later report replaces the earlier one
        assert listed() == 43
        assert first_wire.call(74, b"\0" * 4)[0] == 22  # not 8 bytes
        assert first_wire.call(74, b"\xff" * 8)[0] == 22  # negative
        second_wire.close()  # the connection goes: that storage is no longer active
        assert wait_for(lambda: listed() == 40)


def test_a_stopped_storage_is_deleted_from_its_group(tracker: RunningTracker) -> None:
    with (
        WireClient(tracker.address) as client,
        WireClient(tracker.address) as keep_wire,
        WireClient(tracker.address) as gone_wire,
    ):
        FakeStorage(keep_wire, port=23000).activate()
        FakeStorage(gone_wire, port=23001).activate()
        body = DeleteStorageRequest("group1", "127.0.0.1:23001").encode_body()
        assert client.call(93, body) == (errno.EBUSY, b"")  # ACTIVE
        gone_wire.close()
        wait_for(lambda: client.call(93, body) == (0, b""), message="deleted once its connection closed")
        assert client.call(93, body) == (errno.EALREADY, b"")
        assert client.call(93, DeleteStorageRequest("group1", "10.1.1.1").encode_body()) == (errno.ENOENT, b"")
        assert client.call(93, DeleteStorageRequest("nogroup", "10.1.1.1").encode_body()) == (errno.ENOENT, b"")
        assert client.call(93, b"group1".ljust(16, b"\0")) == (errno.EINVAL, b"")
        listing = client.call(92, group_field())[1]
        stats = {s.storage_port: s.status for s in ListStoragesReply.decode(listing, StatLayout.V6_15).storages}
        assert stats == {23000: StorageStatus.ACTIVE, 23001: StorageStatus.DELETED}
        (group,) = ListGroupsReply.decode(client.call(90, group_field())[1], StatLayout.V6_15).groups
        assert group.storage_count == 1
        # The member still connected hears that its peer is gone.
        briefs = FakeStorage(keep_wire, port=23000).beat().briefs
        assert {b.port: b.status for b in briefs}[23001] is StorageStatus.DELETED
        tracker.call(tracker.server.registry._check)


def test_storage_commands_before_join_are_eacces_and_errors_keep_the_connection(tracker: RunningTracker) -> None:
    with WireClient(tracker.address) as wire:
        for cmd in (83, 84, 74, 86, 87, 88, 89, 76):
            assert wire.call(cmd)[0] == 13
        assert wire.call(250) == (22, b"")  # unknown command
        assert wire.call(11, b"x" * 20) == (22, b"")  # a storage command sent to a tracker
        assert wire.call(111, b"unexpected") == (22, b"")  # malformed body
        assert wire.call(111) == (0, b"")
        status, body = wire.call(75)
        assert status == 0 and ParameterReply.decode(body).as_dict()["check_active_interval"] == "0.5"
        wire.send(b"\0" * 8 + bytes((82, 0)))  # QUIT: closed without a reply
        assert wire.closed_by_peer()


def test_sync_commands_over_the_wire(tracker: RunningTracker) -> None:
    with WireClient(tracker.address) as first_wire, WireClient(tracker.address) as second_wire:
        first = FakeStorage(first_wire, port=23000)
        first.activate()
        first.beat(StorageStats(success_upload_count=3))
        second = FakeStorage(second_wire, port=23001)
        reply = second.join()
        assert reply.status is StorageStatus.WAIT_SYNC and reply.src_id == "127.0.0.1"
        changes = first.beat()
        assert [b.status for b in changes.briefs] == [StorageStatus.ACTIVE, StorageStatus.WAIT_SYNC]
        dest_id = changes.briefs[1].storage_id
        status, body = first_wire.call(86, group_field() + dest_id.encode().ljust(16, b"\0"))
        assert status == 0 and SyncSourceReply.decode(body).src_id == "127.0.0.1"
        status, body = second_wire.call(87)
        assert SyncSourceReply.decode(body).src_id == "127.0.0.1"
        until = SyncSourceReply.decode(body).until_timestamp
        status, _ = second_wire.call(88, b"127.0.0.1".ljust(16, b"\0") + until.to_bytes(8, "big"))
        assert status == 0
        assert second.beat().briefs[1].status is StorageStatus.ACTIVE


def test_a_silent_storage_goes_offline(tracker: RunningTracker) -> None:
    with WireClient(tracker.address) as storage_wire, WireClient(tracker.address) as client:
        storage = FakeStorage(storage_wire)
        storage.activate()
        wait_for(lambda: client.call(101)[0] == 28, message="the silent storage to be dropped")
        status, body = client.call(92, group_field())
        assert status == 0
        assert ListStoragesReply.decode(body, StatLayout.V6_15).storages[0].status is StorageStatus.OFFLINE
        storage.beat()
        assert client.call(101)[0] == 0


def test_the_state_is_saved_and_reloaded(tmp_path: Path) -> None:
    config = TrackerConfig(base_path=str(tmp_path), reserved_storage_space=ReservedSpace.parse("0%"))
    first = RunningTracker(config)
    with WireClient(first.address) as wire:
        FakeStorage(wire, port=23005).activate()
    first.stop()
    assert config.state_path.exists()
    second = RunningTracker(config)
    try:
        with WireClient(second.address) as client:
            status, body = client.call(92, group_field())
            assert status == 0
            (stat,) = ListStoragesReply.decode(body, StatLayout.V6_15).storages
            assert stat.status is StorageStatus.OFFLINE and stat.storage_port == 23005
    finally:
        second.stop()


def test_a_storage_whose_connection_closes_is_offline_at_once(tmp_path: Path) -> None:
    """As FastDFS's tracker: no upload is sent to a storage whose connection is gone, even long
    before check_active_interval (here 10 minutes) would find it silent."""
    config = TrackerConfig(
        base_path=str(tmp_path), check_active_interval=600, reserved_storage_space=ReservedSpace.parse("0%")
    )
    tracker = RunningTracker(config)
    try:
        with WireClient(tracker.address) as client:
            with WireClient(tracker.address) as first:
                FakeStorage(first).activate()
                assert client.call(101)[0] == 0
                # The same storage joins again on a second connection; the first one closing later
                # must not take it offline.
                second_wire = WireClient(tracker.address)
                FakeStorage(second_wire).activate()
            assert client.call(101)[0] == 0
            second_wire.close()
            wait_for(lambda: client.call(101)[0] == 28, message="the storage to be offline")
            status, body = client.call(92, group_field())
            assert status == 0
            assert ListStoragesReply.decode(body, StatLayout.V6_15).storages[0].status is StorageStatus.OFFLINE
            with WireClient(tracker.address) as again:
                FakeStorage(again).activate()
                assert client.call(101)[0] == 0
    finally:
        tracker.stop()
