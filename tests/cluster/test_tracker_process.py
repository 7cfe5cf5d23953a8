"""The tracker as a real process (``python -m cluster.tracker``), with raw sockets acting as
storages and clients."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from procs import WireClient, start_tracker, wait_for, write_conf
from tracker_helpers import FakeStorage, group_field, store_port

from cluster.protocol import ListStoragesReply, StatLayout, StorageStatus


def test_a_restarted_tracker_remembers_its_storages(tmp_path: Path) -> None:
    tracker = start_tracker(tmp_path, reserved_storage_space="0%")
    base = tracker.base_path
    with tracker, WireClient(tracker.address) as wire:
        FakeStorage(wire, port=23001, paths=2).activate()
        FakeStorage(WireClient(tracker.address), port=23002).wire.close()
    assert tracker.proc.returncode == 0
    with (
        start_tracker(tmp_path, base_path=base, reserved_storage_space="0%") as again,
        WireClient(again.address) as client,
    ):
        status, body = client.call(92, group_field())
        assert status == 0
        (stat,) = ListStoragesReply.decode(body, StatLayout.V6_15).storages
        assert (stat.status, stat.storage_port, stat.store_path_count) == (StorageStatus.OFFLINE, 23001, 2)
        assert client.call(101)[0] == 28  # known but offline: no space to offer
        with WireClient(again.address) as wire:
            storage = FakeStorage(wire, port=23001, paths=2)
            assert storage.join(init_flag=False, status=StorageStatus.ACTIVE).status is StorageStatus.ONLINE
            storage.beat()
            assert client.call(101)[0] == 0


@pytest.mark.parametrize(("layout", "group_size", "storage_size"), [("6.15", 113, 487), ("6.10", 105, 612)])
def test_listing_layouts(tmp_path: Path, layout: str, group_size: int, storage_size: int) -> None:
    with start_tracker(tmp_path, stat_layout=layout) as tracker, WireClient(tracker.address) as wire:
        FakeStorage(wire, port=23000).activate()
        FakeStorage(WireClient(tracker.address), port=23001).activate()
        status, body = wire.call(91)
        assert status == 0 and len(body) == group_size
        status, body = wire.call(92, group_field())
        assert status == 0 and len(body) == 2 * storage_size
        stats = ListStoragesReply.decode(body, StatLayout(layout)).storages
        assert [s.id for s in stats] == ["127.0.0.1", "127.0.0.1:23001"]


def test_selection_rules_and_offline_detection(tmp_path: Path) -> None:
    conf = {"reserved_storage_space": "100MB", "store_server": 2, "check_active_interval": 1}
    with start_tracker(tmp_path, **conf) as tracker, WireClient(tracker.address) as client:
        low = FakeStorage(WireClient(tracker.address), port=23000)
        high = FakeStorage(WireClient(tracker.address), port=23001)
        low.join(priority=5)
        low.beat()
        low.report(free_mb=1000)
        high.join(priority=1)
        high.beat()
        high.report(free_mb=1000)
        assert {store_port(client.call(101)[1]) for _ in range(3)} == {23001}
        high.report(free_mb=50)  # below the reserve: the whole group is full
        assert client.call(101)[0] == 28
        high.report(free_mb=1000)
        assert store_port(client.call(101)[1]) == 23001
        # only low keeps beating: high goes OFFLINE and low is offered
        wait_for(lambda: low.beat() and store_port(client.call(101)[1]) == 23000, message="high to go offline")


def test_errors_and_a_body_over_the_limit(tmp_path: Path) -> None:
    with start_tracker(tmp_path, max_pkg_size="2K") as tracker:
        with WireClient(tracker.address) as wire:
            assert wire.call(83)[0] == 13
            assert wire.call(101) == (2, b"")
            assert wire.call(104, group_field("nope")) == (2, b"")
            assert wire.call(123) == (22, b"")
            assert wire.call(111) == (0, b"")
        with WireClient(tracker.address) as wire:
            wire.send(struct.pack("!qBB", 4096, 101, 0))  # the body never comes: refused on the header
            assert wire.closed_by_peer()
        with WireClient(tracker.address) as wire:
            wire.send(struct.pack("!qBB", -1, 101, 0))
            assert wire.closed_by_peer()
        with WireClient(tracker.address) as wire:
            assert wire.call(111) == (0, b"")


def test_connections_over_the_limit_are_closed(tmp_path: Path) -> None:
    with start_tracker(tmp_path, max_connections=4) as tracker:
        held = [WireClient(tracker.address) for _ in range(4)]
        try:
            for wire in held:
                assert wire.call(111) == (0, b"")
            extra = [WireClient(tracker.address) for _ in range(6)]
            for wire in extra:
                assert wire.closed_by_peer()
                wire.close()
            for wire in held:
                assert wire.call(111) == (0, b"")
        finally:
            for wire in held:
                wire.close()
        wait_for(lambda: _active_test(tracker.address), message="a free slot after closing")


def _active_test(address: str) -> bool:
    try:
        with WireClient(address) as wire:
            return wire.call(111) == (0, b"")
    except (ConnectionError, AssertionError, struct.error):
        return False


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "bad.conf", {"base_path": str(tmp_path), "store_lookup": 7})
    done = subprocess.run(
        [sys.executable, "-m", "cluster.tracker", "--conf", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "store_lookup" in done.stderr


def test_unknown_key_warns_and_sigint_stops_cleanly(tmp_path: Path) -> None:
    tracker = start_tracker(tmp_path, no_such_key=1)
    assert "no_such_key" in tracker.log_text()
    os.kill(tracker.pid, signal.SIGINT)
    assert tracker.proc.wait(30) == 0
    tracker.stop()
    assert (tracker.base_path / "data" / "tracker_state.json").exists()


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = write_conf(tmp_path / "t.conf", {"base_path": str(tmp_path), "bind_addr": "127.0.0.1", "port": port})
        done = subprocess.run(
            [sys.executable, "-m", "cluster.tracker", "--conf", str(conf)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2 and "cannot listen" in done.stderr
