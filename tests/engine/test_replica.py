"""Replicas: another storage's files and changes applied at exactly their file IDs.

Two stores stand for two storages of one group, with disjoint parts of the trunk-id space: A (ids 1, 3,
5, ...) and B (2, 4, 6, ...).  What A stores is copied to B with ``put_replica`` and friends, as the
cluster's replication does, and must then read back on B byte for byte, while B's own uploads stay in
B's own containers.

Run as a script, this file is the child process of the crash tests (see the end of the file).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib.util
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trunkstore import (
    AlreadyExists,
    ContentMismatch,
    FileKind,
    FileNotFound,
    InvalidArgument,
    InvalidFileId,
    NotAppender,
    SlotConflict,
    Store,
    StoreConfig,
    StoreFull,
    parse_file_id,
    replica,
)
from trunkstore import fileid as fid
from trunkstore.checksum import crc32
from trunkstore.reading import expected_header
from trunkstore.slot import slot_size
from trunkstore.trunk import TrunkContainer

MIB = 1 << 20
A_ID, B_ID = 100001, 100002
COMMON: dict[str, Any] = {
    "trunk_file_size": 4 * MIB,
    "slot_max_size": MIB,
    "slot_min_size": 256,
    "sync_mode": "none",
}
A_SETTINGS = {**COMMON, "storage_id": A_ID, "trunk_id_start": 1, "trunk_id_step": 2}
B_SETTINGS = {**COMMON, "storage_id": B_ID, "trunk_id_start": 2, "trunk_id_step": 2}
HERE = Path(__file__).resolve()


@pytest.fixture
def open_pair(open_store, tmp_path):
    """``open_pair(**settings)``: stores A and B, both with ``settings`` on top of their own."""

    def make(**settings: Any) -> tuple[Store, Store]:
        return (
            open_store(tmp_path / "a", **{**A_SETTINGS, **settings}),
            open_store(tmp_path / "b", **{**B_SETTINGS, **settings}),
        )

    return make


@pytest.fixture
def pair(open_pair) -> tuple[Store, Store]:
    return open_pair()


def replicate(source: Store, replica: Store, file_id: str) -> None:
    replica.put_replica(file_id, source.get(file_id))


def assert_same(source: Store, replica: Store, file_id: str) -> None:
    assert replica.get(file_id) == source.get(file_id), file_id
    assert replica.stat(file_id) == source.stat(file_id)


def trunk_id_of(file_id: str) -> int:
    trunk = parse_file_id(file_id).trunk
    assert trunk is not None, file_id
    return trunk.trunk_id


def fingerprint(store: Store) -> dict[str, bytes]:
    """Every file of the store but its metadata database, by content: to show that nothing changed."""
    store.sync()
    found = {}
    for dirpath, _dirnames, filenames in os.walk(store.root):
        for name in filenames:
            if not name.startswith("meta.db"):
                path = os.path.join(dirpath, name)
                found[os.path.relpath(path, store.root)] = hashlib.sha256(Path(path).read_bytes()).digest()
    return found


def trunk_replica_id(
    data: bytes,
    trunk_id: int,
    offset: int,
    *,
    alloc: int = 0,
    group: str = "group1",
    directory: tuple[int, int, int] = (0, 0, 0),
    timestamp: int = 1_700_000_000,
    crc: int | None = None,
    size: int | None = None,
) -> str:
    """The ID A would give ``data`` in slot ``trunk_id:offset`` (made here, to choose the slot)."""
    size = len(data) if size is None else size
    alloc = alloc or slot_size(size, 256, 0)
    prefix = "{}/M{:02X}/{:02X}/{:02X}/".format(group, *directory)
    crc = crc32(data) if crc is None else crc
    return fid.encode_trunk_name(A_ID, timestamp, size, crc, trunk_id, offset, alloc, fid.make_tail("bin"), prefix)


def plain_replica_id(data: bytes, *, size: int | None = None, crc: int | None = None, store_path: int = 0) -> str:
    size_field = fid.make_size_field(len(data) if size is None else size)
    name = fid.encode_name(A_ID, 1_700_000_000, size_field, crc32(data) if crc is None else crc, None, "001.dat")
    return fid.format_file_id("group1", store_path, 0x01, 0x02, name)


# ---- every kind of file --------------------------------------------------------------------------------


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_every_kind_reads_back_identically(open_pair, check_store, sync_mode):
    a, b = open_pair(sync_mode=sync_mode)
    rng = random.Random(1)
    master = a.put(rng.randbytes(3000), "jpg")
    large_master = a.put(rng.randbytes(1_200_000), "bin")
    ids = {
        "empty": a.put(b""),
        "small": a.put(b"hello replica", "txt"),
        "large trunk": a.put(rng.randbytes(900_000)),
        "plain": large_master,
        "appender": a.put_appender(b"first part", "log"),
        "empty appender": a.put_appender(),
        "slave of trunk": a.put_slave(master, "_150x150", rng.randbytes(500), "jpg"),
        "slave of plain": a.put_slave(large_master, "-s", rng.randbytes(400_000), "bin"),
    }
    assert a.stat(ids["large trunk"]).kind == FileKind.TRUNK and a.stat(ids["plain"]).kind == FileKind.NORMAL
    for file_id in ids.values():  # the masters are not needed: the slaves arrive first
        replicate(a, b, file_id)
    replicate(a, b, master)
    for name, file_id in [*ids.items(), ("master", master)]:
        assert_same(a, b, file_id)
        assert b.exists(file_id), name
    check_store(b)
    before = fingerprint(b)
    for file_id in [*ids.values(), master]:
        with pytest.raises(AlreadyExists) as info:
            replicate(a, b, file_id)
        assert isinstance(info.value, FileExistsError) and info.value.errno == 17
    assert fingerprint(b) == before
    assert all(tid % 2 == 1 for tid in b._pool.containers), "B made no container of its own yet"
    b.close()
    reopened = Store(b.root, **{**B_SETTINGS, "sync_mode": sync_mode})
    try:
        for file_id in [*ids.values(), master]:
            assert reopened.get(file_id) == a.get(file_id)
        check_store(reopened)
    finally:
        reopened.close()


def test_streamed_replicas_keep_memory_bounded(pair, check_store, measure_peak, tmp_path):
    a, b = pair
    rng = random.Random(2)
    source = tmp_path / "large.bin"
    with open(source, "wb") as handle:
        for _ in range(128):
            handle.write(rng.randbytes(64 * 1024))
    large = a.put_file(source, "bin")
    spooled_trunk = a.put(rng.randbytes(700_000))  # over the in-memory limit, within a slot
    small = a.put(rng.randbytes(1000))

    def stream(file_id: str) -> str:
        path, offset, size = a.locate(file_id)
        with open(path, "rb") as handle, b.open_replica_upload(file_id, size) as upload:
            handle.seek(offset)
            while upload.written < size:
                upload.write(handle.read(min(64 * 1024, size - upload.written)))
            return upload.commit()

    assert measure_peak(lambda: stream(large))[1] < 2 * MIB
    assert stream(spooled_trunk) == spooled_trunk and stream(small) == small
    for file_id in (large, spooled_trunk, small):
        assert_same(a, b, file_id)
        with pytest.raises(AlreadyExists):
            b.open_replica_upload(file_id, a.stat(file_id).size)
    # An abandoned or refused upload leaves nothing behind.
    other = a.put(rng.randbytes(2_000_000))
    upload = b.open_replica_upload(other, 2_000_000)
    upload.write(b"x" * 1000)
    upload.abort()
    upload = b.open_replica_upload(other, 2_000_000)
    upload.write(bytes(2_000_000))
    with pytest.raises(ContentMismatch):
        upload.commit()
    assert not b.exists(other)
    assert os.listdir(b.layout.tmp_dir(0)) == []
    check_store(b)


def test_hot_path_takes_only_what_the_full_checks_take(open_store, tmp_path):
    """Small trunk replicas are decoded from the ID's fixed positions; every ID taken that way must be
    one the full parser takes, with the same slot, directory and header."""
    b = open_store(tmp_path / "b", **{**B_SETTINGS, "subdir_count_per_path": 16, "store_path_count": 2})
    rng = random.Random(5)
    alphabet = "AZaz09-_.+/=!M/é" + "0123456789ABCDEF"
    taken = 0
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 3000))
        directory = (rng.randrange(3), rng.randrange(18), rng.randrange(18))
        offset = rng.randrange(0, 4 * MIB, 256)
        valid = trunk_replica_id(data, rng.randrange(0, 40), offset, directory=directory)
        for mutant in [valid, *(_mutate(valid, rng, alphabet) for _ in range(12))]:
            slot = replica._decode_slot(b, mutant, data)
            if slot is None:
                continue
            taken += 1
            checked = replica.target(b, mutant, len(data))  # raises if the full checks refuse it
            parsed = checked.parsed
            assert parsed.trunk is not None and parsed.kind == FileKind.TRUNK
            checked.check_crc(crc32(data))
            home = (parsed.store_path, parsed.sub_high, parsed.sub_low)
            trunk = parsed.trunk
            assert slot == (trunk.trunk_id, trunk.offset, trunk.alloc_size, home, expected_header(parsed))
    assert taken >= 100


def _mutate(file_id: str, rng: random.Random, alphabet: str) -> str:
    position = rng.randrange(len(file_id))
    roll = rng.random()
    if roll < 0.8:
        return file_id[:position] + rng.choice(alphabet) + file_id[position + 1 :]
    if roll < 0.9:
        return file_id[:position] + file_id[position + 1 :]
    return file_id[:position] + rng.choice(alphabet) + file_id[position:]


# ---- refused replicas ---------------------------------------------------------------------------------

DATA = b"replicated bytes" * 20

REFUSED = {
    "trunk-wrong-size": (lambda: trunk_replica_id(DATA, 1, 0, size=len(DATA) + 1), ContentMismatch),
    "trunk-wrong-crc": (lambda: trunk_replica_id(DATA, 1, 0, crc=crc32(DATA) ^ 1), ContentMismatch),
    "plain-wrong-size": (lambda: plain_replica_id(DATA, size=len(DATA) - 1), ContentMismatch),
    "plain-wrong-crc": (lambda: plain_replica_id(DATA, crc=crc32(DATA) ^ 1), ContentMismatch),
    "other-group": (lambda: trunk_replica_id(DATA, 1, 0, group="group2"), InvalidFileId),
    "malformed": (lambda: "group1/M00/00/00/not-an-id", InvalidFileId),
    "unknown-store-path": (lambda: plain_replica_id(DATA, store_path=3), InvalidFileId),
    "unknown-subdir": (lambda: trunk_replica_id(DATA, 1, 0, directory=(0, 0, 0xFF)), InvalidFileId),
    "slot-beyond-container": (lambda: trunk_replica_id(DATA, 1, 4 * MIB - 256), InvalidFileId),
    "slot-too-small": (lambda: trunk_replica_id(DATA, 1, 0, alloc=len(DATA) + 10), InvalidFileId),
    "trunk-id-zero": (lambda: trunk_replica_id(DATA, 0, 0), InvalidFileId),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_replicas_store_nothing(open_store, tmp_path, check_store, case):
    b = open_store(tmp_path / "b", **{**B_SETTINGS, "subdir_count_per_path": 16})
    b.put(b"one of B's own")
    make_id, error = REFUSED[case]
    file_id = make_id()
    before = fingerprint(b)
    with pytest.raises(error):
        b.put_replica(file_id, DATA)
    with pytest.raises(error), b.open_replica_upload(file_id, len(DATA)) as upload:
        upload.write(DATA)
        upload.commit()
    assert fingerprint(b) == before
    assert not b.exists(file_id)
    check_store(b)


def test_slot_conflict_leaves_the_other_file(pair, check_store):
    a, b = pair
    held = a.put(b"x" * 2000)
    replicate(a, b, held)
    own = b.put(b"one of B's own")
    trunk = parse_file_id(held).trunk
    assert trunk is not None
    other = b"y" * 100
    own_trunk = parse_file_id(own).trunk
    assert own_trunk is not None
    conflicting = [
        trunk_replica_id(other, trunk.trunk_id, trunk.offset),  # the same slot, other bytes
        trunk_replica_id(other, trunk.trunk_id, trunk.offset + 1024),  # inside the held slot
        trunk_replica_id(b"x" * 2000, trunk.trunk_id, trunk.offset, alloc=trunk.alloc_size),  # same bytes, no dedup
        trunk_replica_id(other, own_trunk.trunk_id, own_trunk.offset),  # B's own slot
        trunk_replica_id(other, trunk.trunk_id, 1 * MIB, directory=(0, 0, 1)),  # the container is elsewhere
    ]
    before = fingerprint(b)
    for file_id in conflicting:
        with pytest.raises(SlotConflict) as info:
            b.put_replica(file_id, b"x" * 2000 if file_id == conflicting[2] else other)
        assert isinstance(info.value, AlreadyExists) and not b.exists(file_id)
    assert fingerprint(b) == before
    assert b.get(held) == a.get(held) and b.get(own) == b"one of B's own"
    check_store(b)


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_failed_write_leaves_no_container(open_store, tmp_path, check_store, fs, monkeypatch, sync_mode):
    b = open_store(tmp_path / "b", **{**B_SETTINGS, "sync_mode": sync_mode})
    file_id = trunk_replica_id(b"lost on the way to the disk", 9, 4096)

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "no space left")

    monkeypatch.setattr(TrunkContainer, "write_slot", full)
    with pytest.raises(StoreFull):
        b.put_replica(file_id, b"lost on the way to the disk")
    monkeypatch.undo()
    b.sync()
    assert 9 not in b._pool.containers and fs.container_files(b.root) == []
    check_store(b)
    b.put_replica(file_id, b"lost on the way to the disk")
    assert b.get(file_id) == b"lost on the way to the disk"
    check_store(b)


# ---- partitioned trunk ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("reopen", ["close", "kill"])
def test_own_uploads_stay_in_own_partition(open_pair, check_store, tmp_path, reopen):
    a, b = open_pair()
    rng = random.Random(3)
    replicas = [a.put(rng.randbytes(rng.choice([100, 5000, 900_000]))) for _ in range(30)]
    # A file of A's far ahead, and one of B's own coming back (B lost it, A still had it).
    replicas.append(trunk_replica_id(b"from far ahead", 101, 0))
    returning = trunk_replica_id(b"B's own, coming back", 40, 2048, directory=(0, 3, 4))
    replicas.append(returning)
    payload = {file_id: a.get(file_id) if a.exists(file_id) else None for file_id in replicas}
    payload[replicas[-2]] = b"from far ahead"
    payload[returning] = b"B's own, coming back"
    foreign = {trunk_id_of(f) for f in replicas if trunk_id_of(f) % 2}
    assert len(foreign) >= 4
    for file_id, data in payload.items():
        assert data is not None
        b.put_replica(file_id, data)
    own = [b.put(rng.randbytes(rng.randrange(500_000, 1_000_000))) for _ in range(12)]
    own_ids = {trunk_id_of(f) for f in own}
    assert len(own_ids) >= 3 and all(t % 2 == 0 for t in own_ids) and not own_ids & foreign
    assert b._pool.spaces.next_id > 40  # container 40 is B's own: never created a second time
    check_store(b)
    if reopen == "close":
        b.close()
        root = Path(b.root)
    else:  # what kill -9 leaves: the journal is replayed
        root = tmp_path / "b-image"
        shutil.copytree(b.root, root)
        b.close()
    reopened = Store(root, **B_SETTINGS)
    try:
        assert set(reopened._pool.containers) >= foreign | own_ids | {40}
        for file_id, data in payload.items():
            assert reopened.get(file_id) == data
        check_store(reopened)
        assert reopened._pool.spaces.next_id % 2 == 0 and reopened._pool.spaces.next_id > 40
        later = [reopened.put(rng.randbytes(900_000)) for _ in range(10)]
        later_ids = {trunk_id_of(f) for f in later}
        assert all(t % 2 == 0 for t in later_ids) and not later_ids & foreign
        for file_id in own:
            assert reopened.exists(file_id)
        check_store(reopened)
    finally:
        reopened.close()


def test_next_own_id_skips_containers_that_exist(open_store, tmp_path, check_store):
    b = open_store(tmp_path / "b", **B_SETTINGS)
    # B's own ids 2 and 4 arrive as replicas (B lost them; a peer had them) before B made any.
    back = {trunk_replica_id(b"back %d" % t, t, 0): b"back %d" % t for t in (2, 4)}
    for file_id, data in back.items():
        b.put_replica(file_id, data)
    assert b._pool.spaces.next_id == 6
    b._pool.spaces.next_id = 2  # as if it had not moved on: the ids taken are stepped over all the same
    own_space = b._pool.spaces.own[0]
    while own_space.free_bytes:  # containers 2 and 4 full: the next file needs a new container
        own_space.allocate(own_space.largest)
    made = trunk_id_of(b.put(b"in a new container"))
    assert made == 6 and b._pool.spaces.next_id == 8
    for file_id, data in back.items():
        assert b.get(file_id) == data


def test_partition_change_rounds_the_next_id(open_store, tmp_path, check_store):
    root = tmp_path / "b"
    store = open_store(root, **{**COMMON, "trunk_id_start": 1, "trunk_id_step": 1})
    first = store.put(b"made when every id was this store's")
    store.close()
    store = open_store(root, **B_SETTINGS)
    later = {trunk_id_of(store.put(os.urandom(900_000))) for _ in range(8)}
    assert all(t % 2 == 0 for t in later)
    assert store.get(first) == b"made when every id was this store's"
    check_store(store)


def test_storage_conf_keys():
    config = StoreConfig.from_values({"storage_id": ["100002"], "trunk_id_start": ["2"], "trunk_id_step": ["2"]})
    assert (config.storage_id, config.trunk_id_start, config.trunk_id_step) == (100002, 2, 2)
    assert config.source == 100002


# ---- deletes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sync_mode", "own_file"), [("none", True), ("always", True), ("none", False)])
def test_deletes_remove_an_emptied_foreign_container(open_pair, check_store, sync_mode, own_file):
    a, b = open_pair(sync_mode=sync_mode)
    rng = random.Random(4)
    files = [a.put(rng.randbytes(rng.randrange(0, 20_000))) for _ in range(20)]
    assert {trunk_id_of(f) for f in files} == {1}
    mine = b.put(b"B's own") if own_file else None
    for file_id in files:
        replicate(a, b, file_id)
    container = b._pool.containers[1]
    assert os.path.exists(container.path)
    before = b.stats()
    for index, file_id in enumerate(files):
        b.delete(file_id)
        with pytest.raises(FileNotFound):
            b.get(file_id)
        with pytest.raises(FileNotFound):
            b.delete(file_id)
        if index == 0:
            # Space freed in A's container is free, but not B's to allocate in.
            after = b.stats()
            assert after.trunk_free_bytes > before.trunk_free_bytes
            assert after.trunk_own_free_bytes == before.trunk_own_free_bytes
        check_store(b)
    b.sync()
    assert 1 not in b._pool.containers and not os.path.exists(container.path)
    if mine is not None:
        assert b.get(mine) == b"B's own"
    # The owner writes there again: the container comes back.
    again = a.put(b"again")
    replicate(a, b, again)
    assert trunk_id_of(again) == 1 and b.get(again) == b"again"
    b.close()
    reopened = Store(b.root, **{**B_SETTINGS, "sync_mode": sync_mode})
    try:
        assert set(reopened._pool.containers) == ({1, 2} if own_file else {1})
        assert reopened.get(again) == b"again"
        check_store(reopened)
    finally:
        reopened.close()


@pytest.mark.parametrize("reopen", ["close", "kill"])
@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_container_written_again_right_after_its_removal(open_store, tmp_path, check_store, fs, sync_mode, reopen):
    """With sync always a removed container's file goes once its removal is durable: a replica arriving
    before then must not be written into the file about to go.  After a kill the journal replays the
    removal and then the container's return: the file on disk is the container come back, and stays."""
    settings = {**B_SETTINGS, "sync_mode": sync_mode}
    b = open_store(tmp_path / "b", **settings)
    first, second = (trunk_replica_id(b"file %d" % i, 3, i * 4096) for i in (1, 2))
    b.put_replica(first, b"file 1")
    b.delete(first)
    b.put_replica(second, b"file 2")
    assert b.get(second) == b"file 2"
    check_store(b)
    assert len(fs.container_files(b.root)) == 1
    root = Path(b.root)
    if reopen == "kill":  # what kill -9 leaves: the journal since the last snapshot is replayed
        root = tmp_path / "b-image"
        shutil.copytree(b.root, root)
    b.close()
    reopened = Store(root, **settings)
    try:
        assert reopened._pool.replayed_records == (6 if reopen == "kill" else 0)
        assert reopened.get(second) == b"file 2"
        check_store(reopened)
    finally:
        reopened.close()


def test_containers_come_and_go_under_concurrent_replicas(open_store, tmp_path, check_store):
    """Replicas and deletes racing in one foreign container, which empties again and again (sync always:
    a container whose removal is not durable yet cannot be recreated in its place before then)."""
    b = open_store(tmp_path / "b", **{**B_SETTINGS, "sync_mode": "always"})
    errors: list[BaseException] = []

    def churn(index: int) -> None:
        try:
            for cycle in range(40):
                data = b"thread %d cycle %d" % (index, cycle)
                file_id = trunk_replica_id(data, 7, index * MIB, timestamp=1_700_000_000 + cycle)
                b.put_replica(file_id, data)
                assert b.get(file_id) == data
                b.delete(file_id)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    check_store(b)
    b.close()
    reopened = Store(b.root, **{**B_SETTINGS, "sync_mode": "always"})
    try:
        check_store(reopened)
        assert 7 not in reopened._pool.containers
    finally:
        reopened.close()


def test_removed_containers_do_not_hold_descriptors(open_store, tmp_path, check_store):
    """A foreign container emptied and written again hundreds of times between snapshots."""
    b = open_store(tmp_path / "b", **B_SETTINGS)
    for cycle in range(600):
        data = b"cycle %d" % cycle
        file_id = trunk_replica_id(data, 5, 0, timestamp=1_700_000_000 + cycle)
        b.put_replica(file_id, data)
        b.delete(file_id)
    pool = b._pool
    kept = [c for c in [*pool._retired, *pool._retired_old] if c.fd >= 0]
    assert len(kept) <= 512, "a descriptor is kept for every removed container"
    check_store(b)


# ---- appender files -----------------------------------------------------------------------------------


def test_append_replica(pair, check_store):
    a, b = pair
    file_id = a.put_appender(b"start", "log")
    replicate(a, b, file_id)
    appends = [(a.stat(file_id).size, b" one"), (a.stat(file_id).size + 4, b" two")]
    for _offset, data in appends:
        a.append(file_id, data)
    for offset, data in appends:
        b.append_replica(file_id, offset, data)
    assert_same(a, b, file_id)
    before = fingerprint(b)
    for offset, data in appends:  # delivered again
        with pytest.raises(AlreadyExists):
            b.append_replica(file_id, offset, data)
    with pytest.raises(InvalidArgument, match="earlier change is missing"):
        b.append_replica(file_id, 20, b"after a gap")
    with pytest.raises(InvalidArgument):
        b.append_replica(file_id, 10, b"partly here already")
    with pytest.raises(InvalidArgument):
        b.append_replica(file_id, -1, b"x")
    normal = plain_replica_id(b"")
    b.put_replica(normal, b"")
    with pytest.raises(NotAppender):
        b.append_replica(normal, 0, b"x")
    trunk_file = a.put(b"trunk")
    replicate(a, b, trunk_file)
    before = fingerprint(b)
    with pytest.raises(FileNotFound):
        b.append_replica(trunk_file, 5, b"x")
    with pytest.raises(FileNotFound):
        b.append_replica(a.put_appender(b"never replicated"), 0, b"x")
    assert fingerprint(b) == before
    b.append_replica(file_id, 13, b"")  # an empty append at the end changes nothing
    assert_same(a, b, file_id)
    # The create was copied after A appended to the file: the appends are applied already.
    late = a.put_appender(b"late")
    a.append(late, b" appended")
    replicate(a, b, late)
    with pytest.raises(AlreadyExists):
        b.append_replica(late, 4, b" appended")
    assert_same(a, b, late)
    check_store(b)


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_rename_replica(open_pair, check_store, sync_mode):
    a, b = open_pair(sync_mode=sync_mode)
    src = a.put_appender(b"will be a normal file", "txt")
    a.set_meta(src, {"owner": "a"})
    replicate(a, b, src)
    b.set_meta(src, {"owner": "a"})
    dest = a.regenerate_appender_name(src)
    b.rename_replica(src, dest)
    assert_same(a, b, dest)
    assert b.stat(dest).kind == FileKind.NORMAL and b.get_meta(dest) == {"owner": "a"}
    assert not b.exists(src)
    before = fingerprint(b)
    with pytest.raises(AlreadyExists):
        b.rename_replica(src, dest)
    assert fingerprint(b) == before
    # Neither file here, or names that cannot be such a rename.
    missing = a.put_appender(b"never replicated")
    with pytest.raises(FileNotFound):
        b.rename_replica(missing, a.regenerate_appender_name(missing))
    with pytest.raises(NotAppender):
        b.rename_replica(dest, dest)
    other = a.put_appender(b"x")
    replicate(a, b, other)
    with pytest.raises(InvalidFileId):
        b.rename_replica(other, a.put(b"a trunk file"))
    # B's copy differs from what the new name says: nothing changes.
    a.append(other, b"y")
    renamed = a.regenerate_appender_name(other)
    before = fingerprint(b)
    with pytest.raises(ContentMismatch):
        b.rename_replica(other, renamed)
    assert fingerprint(b) == before and b.get(other) == b"x"
    # A rename cut short after its link: applying it again finishes it.
    b.append_replica(other, 1, b"y")
    os.link(b.layout.file_path(parse_file_id(other)), b.layout.file_path(parse_file_id(renamed)))
    b.rename_replica(other, renamed)
    assert not b.exists(other) and b.get(renamed) == b"xy"
    assert_same(a, b, renamed)
    check_store(b)


# ---- dedup: one slot, several IDs ------------------------------------------------------------------------


def test_shared_slot_gets_one_more_holder(open_pair, open_store, tmp_path, check_store):
    a, b = open_pair(dedup=True)
    data = b"the same bytes, uploaded twice" * 10
    first = a.put(data, "txt")
    second = a.put(data, "txt")
    assert parse_file_id(first).trunk == parse_file_id(second).trunk
    for file_id in (first, second):
        replicate(a, b, file_id)
    for file_id in (first, second):
        assert_same(a, b, file_id)
    with pytest.raises(AlreadyExists):
        replicate(a, b, second)
    check_store(b)
    # B's own upload of the same bytes never shares a slot of A's container.
    mine = b.put(data, "txt")
    assert trunk_id_of(mine) % 2 == 0
    b.delete(first)
    assert b.get(second) == data
    b.delete(second)
    assert 1 not in b._pool.containers
    assert b.get(mine) == data
    check_store(b)
    # Without dedup the second ID cannot share the slot.
    plain = open_store(tmp_path / "c", **B_SETTINGS)
    replicate(a, plain, first)
    with pytest.raises(SlotConflict):
        replicate(a, plain, second)
    assert plain.get(first) == data and not plain.exists(second)
    check_store(plain)


# ---- a random mix of replicated changes and B's own --------------------------------------------------


class Mirror:
    """Applies each change to A and copies it to B, as replication does (at least once)."""

    def __init__(self, a: Store, b: Store, rng: random.Random) -> None:
        self.a, self.b, self.rng = a, b, rng
        self.files: list[str] = []
        self.appenders: list[str] = []
        self.own: dict[str, bytes] = {}
        self.done: list[Any] = []
        self.slaves = 0

    def apply(self, op: Any) -> None:
        op()
        self.done.append(op)

    def step(self) -> None:
        a, b, rng = self.a, self.b, self.rng
        roll = rng.random()
        if roll < 0.3 or not self.files:
            data = rng.randbytes(rng.choice([0, 10, 3000, 60_000, 1_100_000]))
            file_id = a.put(data, "dat")
            self.files.append(file_id)
            self.apply(lambda: b.put_replica(file_id, data))
        elif roll < 0.4:
            file_id = a.put_appender(rng.randbytes(rng.randrange(0, 100)))
            self.files.append(file_id)
            self.appenders.append(file_id)
            self.apply(lambda: replicate(a, b, file_id))
        elif roll < 0.48 and self.appenders:
            file_id = rng.choice(self.appenders)
            offset, data = a.stat(file_id).size, rng.randbytes(rng.randrange(1, 500))
            a.append(file_id, data)
            self.apply(lambda: b.append_replica(file_id, offset, data))
        elif roll < 0.55 and self.appenders:
            file_id = rng.choice(self.appenders)
            size = a.stat(file_id).size
            if rng.random() < 0.5:
                offset, data = rng.randrange(size + 1), rng.randbytes(rng.randrange(1, 300))
                a.modify(file_id, offset, data)
                self.apply(lambda: b.modify(file_id, offset, data))
            else:
                new_size = rng.randrange(size + 1)
                a.truncate(file_id, new_size)
                self.apply(lambda: b.truncate(file_id, new_size))
        elif roll < 0.6 and self.appenders:
            src = self.appenders.pop(rng.randrange(len(self.appenders)))
            dest = a.regenerate_appender_name(src)
            self.files[self.files.index(src)] = dest
            self.apply(lambda: b.rename_replica(src, dest))
        elif roll < 0.65:
            master = rng.choice(self.files)
            if not parse_file_id(master).is_slave:
                self.slaves += 1
                slave = a.put_slave(master, f"_{self.slaves}", rng.randbytes(rng.choice([0, 200, 300_000])), "jpg")
                self.files.append(slave)
                self.apply(lambda: replicate(a, b, slave))
        elif roll < 0.7:
            file_id = rng.choice(self.files)
            meta = {"n": str(rng.randrange(1000))}
            a.set_meta(file_id, meta)
            self.apply(lambda: b.set_meta(file_id, meta))
        elif roll < 0.85:
            file_id = self.files.pop(rng.randrange(len(self.files)))
            if file_id in self.appenders:
                self.appenders.remove(file_id)
            a.delete(file_id)
            self.apply(lambda: b.delete(file_id))
        elif roll < 0.95:
            data = rng.randbytes(rng.choice([0, 500, 20_000, 700_000]))
            self.own[b.put(data)] = data
        elif self.own:
            b.delete(rng.choice(sorted(self.own)))
            self.own = {f: d for f, d in self.own.items() if b.exists(f)}
        if self.done and rng.random() < 0.15:
            # The last change delivered again: refused as done (or harmless, as metadata), nothing changes.
            before = self.contents()
            with contextlib.suppress(AlreadyExists, FileNotFound):
                self.done[-1]()
            assert self.contents() == before

    def contents(self) -> dict[str, tuple[bytes, dict[str, str]] | None]:
        b = self.b
        return {f: (b.get(f), b.get_meta(f)) if b.exists(f) else None for f in self.files}

    def verify(self) -> None:
        for file_id in self.files:
            assert_same(self.a, self.b, file_id)
            assert self.b.get_meta(file_id) == self.a.get_meta(file_id)
        for file_id, data in self.own.items():
            assert self.b.get(file_id) == data


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_replication_with_own_writes(open_pair, check_store, seed):
    a, b = open_pair()
    mirror = Mirror(a, b, random.Random(seed))
    for _ in range(70):
        mirror.step()
        check_store(a)
        check_store(b)
    mirror.verify()
    own_ids = {trunk_id_of(f) for f in mirror.own if parse_file_id(f).trunk}
    assert all(t % 2 == 0 for t in own_ids)
    b.close()
    reopened = Store(b.root, **B_SETTINGS)
    try:
        mirror.b = reopened
        mirror.verify()
        check_store(reopened)
    finally:
        reopened.close()


# ---- kill -9 while replicas are applied -----------------------------------------------------------------


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"replica_{name}", HERE.with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _durability() -> Any:
    """The crash-test harness of test_store_durability, running this file as the child."""
    module = _load("test_store_durability")
    module.CHILD = HERE
    return module


CRASHES = [
    pytest.param("none", "", 1, id="none-random-moment"),
    pytest.param("always", "", 2, id="always-random-moment"),
    pytest.param("always", "container-created:3", 3, id="always-container-created"),
    pytest.param("none", "journal-append-after:200", 4, id="none-journal-append-after"),
    pytest.param("always", "unlink-before:1", 5, id="always-unlink-before"),
    pytest.param("none", "clear-before:60", 6, id="none-clear-before"),
]


@pytest.mark.parametrize(("sync_mode", "crash_at", "seed"), CRASHES)
def test_kill_while_applying_replicas(tmp_path, check_store, sync_mode, crash_at, seed):
    durability = _durability()
    root = tmp_path / "b"
    extra = ("--crash-at", crash_at) if crash_at else ()
    child = durability.Child(root, seed, sync_mode, *extra)
    assert child.ready.wait(30), child.stderr
    if crash_at:
        code = child.finish(timeout=60)
    else:
        child.wait_for(lambda log: log.lines >= 900)
        time.sleep(random.Random(seed).uniform(0.05, 0.5))
        child.kill()
        code = child.process.returncode
    assert code == -signal.SIGKILL, child.stderr
    assert "Traceback" not in child.stderr, child.stderr
    log = child.log
    print(f"acknowledged {len(log.files)} puts, {len(log.deleted)} deletes; containers {log.containers_seen}")
    assert log.files and any(parse_file_id(f).source == A_ID for f in log.files)
    survivors = {f: v for f, v in log.files.items() if f not in log.deleting}
    config = _child_config(sync_mode)
    with Store(root, config) as store:
        for file_id, (digest, size) in survivors.items():
            data = store.get(file_id)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), file_id
        for file_id in log.deleted:
            assert not store.exists(file_id)
        check_store(store)
        for file_id in survivors:
            if parse_file_id(file_id).source == A_ID:
                with pytest.raises(AlreadyExists):
                    store.put_replica(file_id, store.get(file_id))
        fresh = [store.put(os.urandom(size)) for size in (10, 5000, 900_000) * 10]
        assert all(trunk_id_of(f) % 2 == 0 for f in fresh if parse_file_id(f).trunk)
        check_store(store)
    with Store(root, config) as store:
        assert store._pool.replayed_records == 0
        check_store(store)


def _child_config(sync_mode: str) -> StoreConfig:
    return StoreConfig(**{**B_SETTINGS, "sync_mode": sync_mode, "snapshot_every": 300})


class _Owner:
    """What storage A does, without a store: hands out slots in its containers front to back."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.trunk_id = 1
        self.offset = 0

    def next_file(self) -> tuple[str, bytes]:
        rng = self.rng
        data = rng.randbytes(rng.choice([0, 100, 2000, 30_000, 200_000]))
        if rng.random() < 0.1:
            return plain_replica_id(data), data
        alloc = slot_size(len(data), 256, 0)
        if self.offset + alloc > 4 * MIB:
            self.trunk_id, self.offset = self.trunk_id + 2, 0
        file_id = trunk_replica_id(data, self.trunk_id, self.offset, directory=(0, 0, self.trunk_id % 4))
        self.offset += alloc
        return file_id, data


def child_main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("seed", type=int)
    parser.add_argument("sync_mode")
    parser.add_argument("--crash-at", default="")
    args = parser.parse_args()
    if args.crash_at:
        point, _, count = args.crash_at.partition(":")
        _load("crash_child")._install_crash_point(point, int(count))
    rng = random.Random(args.seed)
    owner = _Owner(rng)
    store = Store(args.root, _child_config(args.sync_mode))
    live: list[str] = []

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    emit("READY")
    deadline = time.monotonic() + 40
    ops = 0
    while time.monotonic() < deadline:
        ops += 1
        if ops % 50 == 0:
            emit(f"S {len(store._pool.containers)}")
        # Phases of growth and of draining the oldest files, so that containers are emptied and removed.
        draining = ops % 600 >= 400
        roll = rng.random() * (3 if draining else 0.85)
        if roll < 0.6 or not live:
            file_id, data = owner.next_file()
            store.put_replica(file_id, data)
        elif roll < 0.75:
            data = rng.randbytes(rng.choice([10, 3000, 300_000]))
            file_id = store.put(data)
        else:
            file_id = live.pop(0 if draining else rng.randrange(len(live)))
            emit(f"d {file_id}")
            store.delete(file_id)
            emit(f"D {file_id}")
            continue
        live.append(file_id)
        emit(f"P {file_id} {hashlib.sha256(data).hexdigest()} {len(data)}")
    return 3  # not killed in time: the parent treats this as a failure


if __name__ == "__main__":
    sys.exit(child_main())
