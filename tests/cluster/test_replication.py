"""Replication within a group: real storages on 127.0.0.1 copying each other's changes.

Each storage is configured as a member of the group (:func:`group_helpers.member_conf`).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from group_helpers import GROUP, THIRD_MEMBER, all_active, member_conf, read, statuses
from procs import ServerProcess, WireClient, start_storage, start_tracker, wait_for
from storage_wire import (
    append,
    assert_store_clean,
    delete,
    download,
    file_info,
    filename_of,
    get_meta,
    modify,
    regenerate,
    set_meta,
    truncate,
    upload,
    upload_slave,
    upload_status,
)

from cluster.cli import bundle, main
from cluster.client import Client
from cluster.errors import Busy, NotFound
from cluster.protocol import (
    HEADER_SIZE,
    AppendFileRequest,
    StorageStatus,
    SyncCreateFileRequest,
    SyncDeleteFileRequest,
    decode_header,
    decode_metadata,
)
from trunkstore import Store

MIB = 1 << 20


@dataclass
class Pair:
    tracker: ServerProcess
    a: ServerProcess
    b: ServerProcess


def has(storage: ServerProcess, name: str, data: bytes) -> bool:
    return read(storage, name) == data


def gone(storage: ServerProcess, name: str) -> bool:
    return read(storage, name) is None


@contextmanager
def started_pair(tmp_path: Path, first: dict[str, Any] | None = None, **both: Any) -> Iterator[Pair]:
    """A tracker and two members of a group, both ACTIVE: ``both`` sets both, ``first`` the first only."""
    with (
        start_tracker(tmp_path) as tracker,
        start_storage(tmp_path, [tracker], **both, **(first or {}), **member_conf(1)) as a,
        start_storage(tmp_path, [tracker], **both, **member_conf(2)) as b,
    ):
        wait_for(lambda: all_active(tracker, 2), message="both storages ACTIVE")
        yield Pair(tracker, a, b)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with started_pair(tmp_path) as started:
        yield started


def upload_deleting_some(
    address: str, count: int, *, every: int, size: Callable[[int], int]
) -> tuple[dict[str, bytes], list[str]]:
    """``count`` uploads of random bytes (``size(number)`` of them), every ``every``-th deleted again at
    once: ``({name: data} kept, [names deleted])``."""
    kept: dict[str, bytes] = {}
    deleted: list[str] = []
    with WireClient(address) as wire:
        for number in range(count):
            data = os.urandom(size(number))
            name = upload(wire, data)
            if number % every == 0:
                assert delete(wire, name)[0] == 0
                deleted.append(name)
            else:
                kept[name] = data
    return kept, deleted


def test_every_kind_of_change_reaches_the_peer(pair: Pair) -> None:
    small, medium, large = os.urandom(1000), os.urandom(100 * 1024), os.urandom(3 * MIB)
    with WireClient(pair.a.address) as wire:
        names = {
            "small": (upload(wire, small), small),
            "empty": (upload(wire, b""), b""),
            "medium": (upload(wire, medium, "bin"), medium),
            "large": (upload(wire, large, "dat"), large),
        }
        master = names["small"][0]
        status, body = upload_slave(wire, master, "_150x150", b"thumb", "jpg")
        assert status == 0
        names["slave"] = (filename_of(body), b"thumb")
        appender = upload(wire, b"0123456789", appender=True)
        assert append(wire, appender, b"abcdef")[0] == 0
        assert modify(wire, appender, 2, b"XY")[0] == 0
        assert truncate(wire, appender, 12)[0] == 0
        names["appender"] = (appender, b"01XY456789ab")
        assert set_meta(wire, master, {"width": "150", "kind": "thumb"})[0] == 0
    assert names["small"][0][10:15] == "AAGGo"  # the source field holds storage ID 100001 (0x000186a1)
    for name, data in names.values():
        wait_for(lambda name=name, data=data: has(pair.b, name, data), message=f"{name} on the peer")
    with WireClient(pair.b.address) as wire:

        def peer_meta() -> dict[str, str] | None:
            status, body = get_meta(wire, master)
            return dict(decode_metadata(body)) if status == 0 else None

        # The metadata's record follows the appender's changes in the binlog: it may arrive just after.
        wait_for(lambda: peer_meta() == {"width": "150", "kind": "thumb"}, message="the metadata on the peer")
        status, info_a = file_info(wire, names["large"][0])
    with WireClient(pair.a.address) as wire:
        assert file_info(wire, names["large"][0]) == (status, info_a)
        assert delete(wire, names["medium"][0])[0] == 0
        status, body = regenerate(wire, appender)
        assert status == 0
        renamed = filename_of(body)
    wait_for(lambda: gone(pair.b, names["medium"][0]), message="the delete on the peer")
    wait_for(lambda: has(pair.b, renamed, b"01XY456789ab"), message="the regenerated name on the peer")
    assert gone(pair.b, appender)


def test_replication_goes_both_ways_without_sharing_trunk_containers(pair: Pair) -> None:
    files: dict[str, bytes] = {}
    for storage in (pair.a, pair.b):
        with WireClient(storage.address) as wire:
            for number in range(30):
                data = os.urandom(200 + number)
                files[upload(wire, data)] = data
    for name, data in files.items():
        wait_for(lambda name=name, data=data: has(pair.a, name, data) and has(pair.b, name, data), message=name)
    pair.a.stop()
    pair.b.stop()
    for storage in (pair.a, pair.b):
        assert_store_clean(storage.base_path)


def test_a_restarted_peer_catches_up(pair: Pair, tmp_path: Path) -> None:
    pair.b.stop()
    kept, deleted = upload_deleting_some(pair.a.address, 60, every=3, size=lambda _number: 300)
    with start_storage(tmp_path, [pair.tracker], base_path=pair.b.base_path, **member_conf(2)) as b:
        for name, data in kept.items():
            wait_for(lambda name=name, data=data: has(b, name, data), message=f"{name} on the restarted peer")
        assert all(gone(b, name) for name in deleted)
    # The peer came back on another port; its progress is still kept in the one mark file of its ID.
    marks = [path.name for path in (pair.a.base_path / "data" / "sync").glob("*.mark")]
    assert marks == ["100002.mark"]


def test_a_storage_deleted_from_the_group_comes_back_as_a_member(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client([pair.tracker.address]) as client:
        with pytest.raises(Busy):
            client.delete_storage(GROUP, "100002")  # serving
        pair.b.stop()
        wait_for(lambda: statuses(pair.tracker)["100002"] is StorageStatus.OFFLINE, message="b OFFLINE")
        assert main(["delete-storage", "--tracker", pair.tracker.address, GROUP, "100002"]) == 0
        assert "storage 100002 deleted from group1" in capsys.readouterr().out
        assert statuses(pair.tracker) == {"100001": StorageStatus.ACTIVE, "100002": StorageStatus.DELETED}
        client.delete_storage(GROUP, "100002")  # deleted already: nothing to do
        with pytest.raises(NotFound):
            client.delete_storage(GROUP, "100009")
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"written while b was out of the group")
    with start_storage(tmp_path, [pair.tracker], base_path=pair.b.base_path, **member_conf(2)) as b:
        wait_for(lambda: all_active(pair.tracker, 2), message="b ACTIVE again")
        wait_for(lambda: has(b, name, b"written while b was out of the group"), message="what b missed")


def test_a_new_storage_gets_a_full_copy_and_becomes_active(pair: Pair, tmp_path: Path) -> None:
    files: dict[str, bytes] = {}
    for storage in (pair.a, pair.b):
        with WireClient(storage.address) as wire:
            for _ in range(10):
                data = os.urandom(500)
                files[upload(wire, data)] = data
    for name, data in files.items():
        wait_for(lambda name=name, data=data: has(pair.a, name, data), message=name)
    # b is gone for good: the newcomer can have b's files only from a, which holds them as a replica.
    pair.b.stop()
    with start_storage(tmp_path, [pair.tracker], **member_conf(3, members=3)) as c:
        for name, data in files.items():
            wait_for(lambda name=name, data=data: has(c, name, data), message=f"{name} on the new storage")
        wait_for(lambda: statuses(pair.tracker).get("100003") is StorageStatus.ACTIVE, message="the newcomer ACTIVE")


def test_reads_are_routed_to_a_replica_once_it_has_the_file(pair: Pair) -> None:
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"routed")
    wait_for(lambda: has(pair.b, name, b"routed"), message="the file on the peer")
    file_id = f"{GROUP}/{name}"

    def both_offered() -> bool:
        # The peer counts as holding the file once its reported progress passes the file's second:
        # keep the source writing so that there is later progress to report.
        with WireClient(pair.a.address) as wire:
            upload(wire, b"tick")
        with Client([pair.tracker.address]) as client:
            return {client.query_fetch(file_id).port for _ in range(4)} == {pair.a.port, pair.b.port}

    wait_for(both_offered, timeout=20, interval=0.3, message="downloads offered by both storages")


def test_sync_requests_are_idempotent(pair: Pair) -> None:
    data = os.urandom(777)
    with WireClient(pair.a.address) as wire:
        name = upload(wire, data)
    wait_for(lambda: has(pair.b, name, data), message="the file on the peer")
    with WireClient(pair.b.address) as wire:
        wire.send(SyncCreateFileRequest(1, GROUP, name, len(data)).encode(data))
        assert wire.reply()[0] == errno.EEXIST
        wire.send(SyncDeleteFileRequest(1, GROUP, name).encode())
        assert wire.reply()[0] == 0
        wire.send(SyncDeleteFileRequest(1, GROUP, name).encode())
        assert wire.reply()[0] == errno.ENOENT
    assert gone(pair.b, name)


def test_a_replica_refuses_bytes_that_do_not_match_the_name(pair: Pair, tmp_path: Path) -> None:
    with Store(tmp_path / "third", sync_mode="none", **THIRD_MEMBER) as third:
        name = third.put(b"original bytes").split("/", 1)[1]  # a valid ID, of another member
    forged = b"forged bytes!!"  # as long as the original, but another crc32
    assert len(forged) == 14 and zlib.crc32(forged) != zlib.crc32(b"original bytes")
    with WireClient(pair.b.address) as wire:
        wire.send(SyncCreateFileRequest(1, GROUP, name, 14).encode(forged))
        assert wire.reply()[0] == errno.EINVAL
    assert gone(pair.b, name)
    with WireClient(pair.b.address) as wire:
        wire.send(SyncCreateFileRequest(1, GROUP, name, 14).encode(b"original bytes"))
        assert wire.reply()[0] == 0
    assert has(pair.b, name, b"original bytes")


def test_sync_requests_from_outside_the_group_are_refused(pair: Pair) -> None:
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"keep me")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.bind(("127.0.0.2", 0))  # a host that is no storage of the group
        sock.connect(("127.0.0.1", pair.a.port))
        sock.sendall(SyncDeleteFileRequest(1, GROUP, name).encode())
        header = decode_header(_recv_exact(sock, HEADER_SIZE))
    finally:
        sock.close()
    assert header.status == errno.EACCES
    assert has(pair.a, name, b"keep me")


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        piece = sock.recv(count - len(data))
        assert piece, "connection closed"
        data += piece
    return data


def test_binlog_records_what_clients_did(pair: Pair) -> None:
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"logged")
        wait_for(lambda: has(pair.b, name, b"logged"), message="the file on the peer")
        assert delete(wire, name)[0] == 0
    binlog = pair.a.base_path / "data" / "sync" / "binlog.000"
    wait_for(lambda: f" D {name}\n" in binlog.read_text(), message="the delete in the binlog")
    lines = [line.split(" ") for line in binlog.read_text().splitlines() if name in line]
    assert [fields[1:] for fields in lines] == [["C", name], ["D", name]]
    # The peer applied both and recorded them in lower case.
    peer_binlog = pair.b.base_path / "data" / "sync" / "binlog.000"
    wait_for(lambda: f" d {name}\n" in peer_binlog.read_text(), message="the peer's binlog")


def test_bundled_cluster_with_two_storages_per_group(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cluster.cli", "cluster"]
    ports = ["--tracker-port", "0", "--storage-port", "0", "--sync-mode", "none"]
    started = subprocess.run(
        [*command, "up", "--dir", str(tmp_path), "--detach", "--storages", "4", "--groups", "2", *ports],
        capture_output=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr.decode()
        running = bundle.Bundle.load(tmp_path)
        assert running is not None
        tracker = running.trackers[0].address
        by_group: dict[str, list[str]] = {}
        for record in running.storages:
            by_group.setdefault(record.group, []).append(record.address)
        assert sorted(len(members) for members in by_group.values()) == [2, 2]

        def everyone_active() -> bool:
            with Client([tracker]) as client:
                found = [s for g in ("group1", "group2") for s in client.list_storages(g)]
            return len(found) == 4 and all(s.status is StorageStatus.ACTIVE for s in found)

        wait_for(everyone_active, timeout=30, message="four ACTIVE storages")
        with Client([tracker]) as client:
            uploaded = {client.upload(os.urandom(1234 + n)): n for n in range(8)}
        for file_id in uploaded:
            group, name = file_id.split("/", 1)
            for address in by_group[group]:
                host, _, port = address.rpartition(":")

                def copied(host: str = host, port: str = port, name: str = name, group: str = group) -> bool:
                    with WireClient((host, int(port))) as wire:
                        return download(wire, name, group=group)[0] == 0

                wait_for(copied, message=f"{file_id} on {address}")
    finally:
        subprocess.run([*command, "down", "--dir", str(tmp_path)], capture_output=True, timeout=120)


def test_a_slot_still_held_is_busy_until_its_delete_arrives(pair: Pair, tmp_path: Path) -> None:
    # A third member's store, in-process: it deletes X and reuses X's slot for Y, so a replica that
    # gets Y before X's delete (from another peer, in an initial copy) must refuse Y for now.
    with Store(tmp_path / "third", sync_mode="none", **THIRD_MEMBER) as third:
        x_id = third.put(b"x" * 1000)
        third.delete(x_id)
        y_id = third.put(b"y" * 1000)
    x_name, y_name = x_id.split("/", 1)[1], y_id.split("/", 1)[1]
    assert x_name[37:53] == y_name[37:53]  # the same trunk id, offset and slot size
    with WireClient(pair.b.address) as wire:
        wire.send(SyncCreateFileRequest(1, GROUP, x_name, 1000).encode(b"x" * 1000))
        assert wire.reply()[0] == 0
        wire.send(SyncCreateFileRequest(2, GROUP, y_name, 1000).encode(b"y" * 1000))
        assert wire.reply()[0] == errno.EBUSY
        wire.send(SyncDeleteFileRequest(3, GROUP, x_name).encode())
        assert wire.reply()[0] == 0
        wire.send(SyncCreateFileRequest(4, GROUP, y_name, 1000).encode(b"y" * 1000))
        assert wire.reply()[0] == 0
    assert has(pair.b, y_name, b"y" * 1000) and gone(pair.b, x_name)


def test_durable_replicas_stored_side_by_side_keep_their_order(tmp_path: Path) -> None:
    # sync_mode always: the replica runs a peer's creates concurrently (one fsync for many) but
    # answers them in order, and a delete waits for the creates before it.
    with started_pair(tmp_path, sync_mode="always") as started:
        a, b = started.a, started.b
        kept, deleted = upload_deleting_some(a.address, 150, every=5, size=lambda number: 100 + number)
        for name, data in kept.items():
            wait_for(lambda name=name, data=data: has(b, name, data), message=f"{name} on the peer")
        assert all(gone(b, name) for name in deleted)
        a.stop()
        b.stop()
        assert_store_clean(b.base_path)


def test_ack_replicas_acknowledges_only_files_a_peer_holds(tmp_path: Path) -> None:
    with started_pair(tmp_path, first={"ack_replicas": 1, "network_timeout": 3}) as started:
        a, b = started.a, started.b

        def uploaded() -> str | None:
            with WireClient(a.address) as wire:
                status, body = upload_status(wire, b"two copies")
            assert status in (0, errno.EBUSY), status  # EBUSY: the peer is not connected yet
            return filename_of(body) if status == 0 else None

        name = wait_for(uploaded, message="an upload once the peer is reachable")
        assert read(b, name) == b"two copies"  # no wait: the reply came after the peer had it
        with WireClient(a.address) as wire:
            for number in range(20):
                data = b"copy %d" % number
                copied = upload(wire, data)
                assert read(b, copied) == data
        b.stop()
        # With its only peer gone, the storage refuses uploads rather than keep a single copy (one
        # that arrives as the peer goes is answered EBUSY too, or ETIMEDOUT if the peer is slow to go:
        # kept, but not acknowledged).
        statuses: list[int] = []

        def refused() -> bool:
            statuses.append(upload_status_of(a))
            return statuses[-1] == errno.EBUSY

        wait_for(refused, message="uploads refused without a peer")
        assert set(statuses) <= {errno.EBUSY, errno.ETIMEDOUT}


def upload_status_of(storage: ServerProcess) -> int:
    with WireClient(storage.address) as wire:
        return upload_status(wire, b"one copy only")[0]


def test_a_peer_behind_on_appends_and_truncates_gets_the_file_whole(pair: Pair, tmp_path: Path) -> None:
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"", appender=True)
    wait_for(lambda: has(pair.b, name, b""), message="the empty appender file on the peer")
    pair.b.stop()
    with WireClient(pair.a.address) as wire:
        assert append(wire, name, b"a" * 100)[0] == 0
        assert truncate(wire, name, 50)[0] == 0
        assert append(wire, name, b"b" * 10)[0] == 0
        assert set_meta(wire, name, {"state": "cut"})[0] == 0
    expected = b"a" * 50 + b"b" * 10
    with start_storage(tmp_path, [pair.tracker], base_path=pair.b.base_path, **member_conf(2)) as b:
        wait_for(lambda: has(b, name, expected), message="the appender file as it is on its source")
        with WireClient(b.address) as wire:
            status, body = get_meta(wire, name)
        assert status == 0 and dict(decode_metadata(body)) == {"state": "cut"}


def test_concurrent_appends_reach_the_peer_at_their_real_offsets(pair: Pair) -> None:
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"", appender=True)

    def append_many(worker: int) -> None:
        with WireClient(pair.a.address) as wire:
            for number in range(40):
                assert append(wire, name, bytes([65 + worker]) * (10 + number))[0] == 0

    threads = [threading.Thread(target=append_many, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    source = read(pair.a, name)
    assert source is not None and len(source) == 4 * sum(range(10, 50))
    wait_for(lambda: has(pair.b, name, source), message="the same bytes on the peer")


def test_a_renamed_appender_reaches_a_peer_that_missed_it_with_its_metadata(pair: Pair, tmp_path: Path) -> None:
    pair.b.stop()
    with WireClient(pair.a.address) as wire:
        appender = upload(wire, b"grows", appender=True)
        assert append(wire, appender, b" and grows")[0] == 0
        assert set_meta(wire, appender, {"kind": "log"})[0] == 0
        status, body = regenerate(wire, appender)
        assert status == 0
        renamed = filename_of(body)
    with start_storage(tmp_path, [pair.tracker], base_path=pair.b.base_path, **member_conf(2)) as b:
        wait_for(lambda: has(b, renamed, b"grows and grows"), message="the renamed file on the peer")
        with WireClient(b.address) as wire:
            status, body = get_meta(wire, renamed)
        assert status == 0 and dict(decode_metadata(body)) == {"kind": "log"}
        assert gone(b, appender)


def test_deletes_and_uploads_racing_for_slots_replicate_exactly(tmp_path: Path) -> None:
    # Freed slots are taken again at once by concurrent uploads: the peers must see each delete
    # before the upload that reuses its slot.  With sync_mode interval the deletes run in threads
    # (a metadata commit) while uploads run on the event loop, so the two really race.
    with started_pair(tmp_path, sync_mode="interval") as started:
        _churn_and_compare(started)


def _churn_and_compare(pair: Pair) -> None:
    kept: dict[str, bytes] = {}
    deleted: list[str] = []
    lock = threading.Lock()

    def churn(worker: int) -> None:
        mine: list[str] = []
        with WireClient(pair.a.address) as wire:
            for number in range(100):
                data = bytes([worker]) * 300 + number.to_bytes(2, "big")
                name = upload(wire, data)
                mine.append(name)
                with lock:
                    kept[name] = data
                if number % 2:
                    victim = mine.pop(0)
                    assert delete(wire, victim)[0] == 0
                    with lock:
                        del kept[victim]
                        deleted.append(victim)

    threads = [threading.Thread(target=churn, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, data in kept.items():
        wait_for(lambda name=name, data=data: has(pair.b, name, data), message=f"{name} on the peer")
    assert all(gone(pair.b, name) for name in deleted)


def test_an_append_cut_short_keeps_what_others_appended_meanwhile(pair: Pair) -> None:
    with WireClient(pair.a.address) as wire:
        name = upload(wire, b"0123456789", appender=True)
    cut = WireClient(pair.a.address)
    try:
        # 1 MiB announced, 300 KiB sent: the first 256 KiB piece is stored, the rest never comes.
        cut.send(AppendFileRequest(name, 1 << 20).encode_head() + b"x" * (300 * 1024))

        def first_piece_stored() -> bool:
            stored = read(pair.a, name)
            return stored is not None and len(stored) > 10

        wait_for(first_piece_stored, message="the cut append's first piece")
        with WireClient(pair.a.address) as wire:
            assert append(wire, name, b"mine")[0] == 0  # acknowledged: it must survive the cut
    finally:
        cut.close()
    expected_tail = b"mine"

    def settled() -> bytes | None:
        stored = read(pair.a, name)
        return stored if stored is not None and stored.endswith(expected_tail) else None

    source = wait_for(settled, message="the other client's append kept")
    wait_for(lambda: has(pair.b, name, source), message="the same bytes on the peer")


def test_a_regenerated_appender_replaces_a_stale_copy_on_a_peer(pair: Pair, tmp_path: Path) -> None:
    with WireClient(pair.a.address) as wire:
        appender = upload(wire, b"grows", appender=True)
    wait_for(lambda: has(pair.b, appender, b"grows"), message="the appender file on the peer")
    pair.b.stop()
    with WireClient(pair.a.address) as wire:
        assert append(wire, appender, b" and grows")[0] == 0
        status, body = regenerate(wire, appender)
        assert status == 0
        renamed = filename_of(body)
    with start_storage(tmp_path, [pair.tracker], base_path=pair.b.base_path, **member_conf(2)) as b:
        wait_for(lambda: has(b, renamed, b"grows and grows"), message="the renamed file on the peer")
        assert gone(b, appender)
