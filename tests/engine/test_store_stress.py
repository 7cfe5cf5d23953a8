"""Stress with tiny containers: thousands of random operations against a dict model.

Containers of 4 MiB force container creation, slot splitting, merging of freed neighbours and the
removal of containers that become empty; ``check()`` runs at intervals and everything is compared
with a plain dict of what should be stored.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import zlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trunkstore import FileNotFound, Store, parse_file_id

MIB = 1 << 20
TINY = {"trunk_file_size": 4 * MIB, "slot_max_size": 256 * 1024, "slot_min_size": 256, "sync_mode": "none"}


def random_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.4:
        return rng.randrange(0, 300)
    if roll < 0.75:
        return rng.randrange(300, 8192)
    if roll < 0.95:
        return rng.randrange(8192, 200_000)
    return rng.randrange(256 * 1024 - 100, 400_000)  # around and above slot_max_size


def container_paths(store: Store) -> list[str]:
    return sorted(
        os.path.join(dirpath, name)
        for directory in store.layout.store_dirs
        for dirpath, _dirs, names in os.walk(os.path.join(directory, "data"))
        for name in names
        if len(name) == 6 and name.isdigit()
    )


def assert_all_freed(store: Store, check_store) -> None:
    """Everything deleted: one empty, hole-punched container per store path; free space in one piece."""
    check_store(store)  # also syncs, which finishes pending container removals
    stats = store.stats()
    paths = store.config.store_path_count
    assert stats.trunk_containers == paths
    assert stats.trunk_free_bytes == stats.trunk_capacity_bytes == paths * store.config.trunk_file_size
    assert stats.trunk_free_extents == paths
    containers = container_paths(store)
    assert len(containers) == paths, containers
    for path in containers:
        assert os.path.getsize(path) == store.config.trunk_file_size
        assert os.stat(path).st_blocks * 512 <= 64 * 1024, f"{path} still holds {os.stat(path).st_blocks} blocks"


class Model:
    """The store under test and what it should hold."""

    def __init__(self, store: Store, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        self.files: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def put(self) -> None:
        rng = self.rng
        if rng.random() < 0.1:
            batch = [rng.randbytes(random_size(rng)) for _ in range(rng.randrange(1, 8))]
            for file_id, data in zip(self.store.put_many(batch), batch, strict=True):
                self.files[file_id] = data
            return
        data = rng.randbytes(random_size(rng))
        file_id = self.store.put(data, rng.choice(["", "jpg"]))
        assert file_id not in self.files
        self.files[file_id] = data

    def delete(self) -> None:
        file_id = self.rng.choice(list(self.files))
        self.store.delete(file_id)
        del self.files[file_id]
        self.deleted.append(file_id)

    def read(self) -> None:
        file_id, data = self.rng.choice(list(self.files.items()))
        if self.rng.random() < 0.5:
            assert self.store.get(file_id) == data
        else:
            offset = self.rng.randrange(0, len(data) + 2)
            length = self.rng.randrange(0, 5000)
            assert self.store.get(file_id, offset, length) == data[offset : offset + length]

    def verify(self) -> None:
        for file_id, data in self.files.items():
            assert self.store.get(file_id) == data, file_id
        for file_id in self.rng.sample(self.deleted, min(50, len(self.deleted))):
            with pytest.raises(FileNotFound):
                self.store.get(file_id)


@pytest.mark.parametrize(
    ("seed", "paths", "steps", "sync_mode"),
    [(1, 1, 5000, "none"), (2, 1, 5000, "none"), (3, 2, 5000, "none"), (4, 1, 400, "always")],
)
def test_random_puts_and_deletes_match_a_model(open_store, check_store, seed, paths, steps, sync_mode):
    rng = random.Random(seed)
    settings = {**TINY, "store_path_count": paths, "sync_mode": sync_mode}
    store = open_store(**settings)
    model = Model(store, rng)
    max_containers = 0
    for step in range(1, steps + 1):
        roll = rng.random()
        if not model.files or roll < 0.55:
            model.put()
        elif roll < 0.9:
            model.delete()
        else:
            model.read()
        max_containers = max(max_containers, store.stats().trunk_containers)
        if step % 500 == 0 or step == steps // 3:
            check_store(store)
            model.verify()
        if step == steps // 2:
            store.close()
            store = model.store = open_store(**settings)
            assert store._pool.replayed_records == 0
            model.verify()
    print(f"seed {seed}: {len(model.files)} live files, at most {max_containers} containers")
    if steps >= 1000:
        assert max_containers >= 2 * paths, "the run was meant to need several containers"
    model.verify()
    for file_id in list(model.files):
        store.delete(file_id)
    assert_all_freed(store, check_store)
    store.close()
    reopened = open_store(**settings)
    assert_all_freed(reopened, check_store)
    for file_id in model.deleted[-100:]:
        with pytest.raises(FileNotFound):
            reopened.get(file_id)


def test_fill_and_drain_cycles_keep_reusing_space(open_store, check_store):
    rng = random.Random(5)
    store = open_store(**TINY)
    for cycle in range(4):
        live = {}
        while store.stats().trunk_containers < 3:
            data = rng.randbytes(rng.randrange(20_000, 120_000))
            live[store.put(data)] = data
        trunk_ids = {parse_file_id(f).trunk.trunk_id for f in live}
        assert len(trunk_ids) == 3
        order = list(live)
        rng.shuffle(order)
        for file_id in order:
            store.delete(file_id)
        assert_all_freed(store, check_store)
        print(f"cycle {cycle}: containers {sorted(trunk_ids)}")


def test_freed_neighbours_coalesce(open_store, check_store):
    store = open_store(**TINY)
    ids = [store.put(bytes([i % 256]) * 1000) for i in range(400)]  # 400 KB: one container
    assert store.stats().trunk_free_extents == 1  # the tail
    for file_id in ids[::2]:
        store.delete(file_id)
    assert store.stats().trunk_free_extents == 201  # 200 holes and the tail
    check_store(store)
    for file_id in ids[1::2]:
        store.delete(file_id)
    stats = store.stats()
    assert stats.trunk_free_extents == 1 and stats.trunk_free_bytes == stats.trunk_capacity_bytes
    check_store(store)
    # The coalesced space serves a slot as large as the holes were together.
    big = store.put(b"B" * 200_000)
    assert parse_file_id(big).trunk.offset == 0


def test_deleting_returns_disk_blocks(open_store, check_store):
    store = open_store(**TINY)
    before = store.put(b"a" * 1000)
    large = store.put(os.urandom(200_000))
    after = store.put(b"c" * 1000)
    store.sync()
    (container,) = container_paths(store)
    used = os.stat(container).st_blocks * 512
    store.delete(large)
    store.sync()
    freed = used - os.stat(container).st_blocks * 512
    assert freed >= 200_000 - 2 * 4096, f"only {freed} bytes returned"
    assert store.get(before) == b"a" * 1000 and store.get(after) == b"c" * 1000
    check_store(store)


def test_concurrent_writers_and_readers(open_store, check_store):
    store = open_store(**TINY)
    shared: dict[str, bytes] = {}
    shared_lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        mine: dict[str, bytes] = {}
        try:
            for _ in range(400):
                if mine and rng.random() < 0.4:
                    file_id = rng.choice(list(mine))
                    with shared_lock:
                        del shared[file_id]
                    store.delete(file_id)
                    del mine[file_id]
                    with pytest.raises(FileNotFound):
                        store.get(file_id)
                else:
                    data = rng.randbytes(random_size(rng))
                    file_id = store.put(data)
                    mine[file_id] = data
                    with shared_lock:
                        shared[file_id] = data
        except BaseException as exc:
            errors.append(exc)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(1500):
                with shared_lock:
                    if not shared:
                        continue
                    file_id, data = rng.choice(list(shared.items()))
                try:
                    got = store.get(file_id)
                except FileNotFound:
                    with shared_lock:
                        assert file_id not in shared, f"{file_id} vanished while live"
                    continue
                assert got == data, f"{file_id} returned other bytes"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reader, args=(100 + i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for file_id, data in shared.items():
        assert store.get(file_id) == data
    check_store(store)
    for file_id in list(shared):
        store.delete(file_id)
    assert_all_freed(store, check_store)


class StoreMachine(RuleBasedStateMachine):
    """Random sequences of store operations, reopening included, checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="trunkstore-machine-")
        self.store = Store(self.root, **TINY)
        self.files: dict[str, bytes] = {}
        self.appenders: dict[str, bytearray] = {}
        self.gone: list[str] = []

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(
        size=st.sampled_from([0, 1, 100, 232, 233, 5000, 70_000, 262_120, 262_121, 300_000]), fill=st.integers(0, 255)
    )
    def put(self, size: int, fill: int) -> None:
        data = bytes([fill]) * size
        self.files[self.store.put(data)] = data

    @rule(sizes=st.lists(st.integers(0, 20_000), min_size=1, max_size=5))
    def put_many(self, sizes: list[int]) -> None:
        batch = [os.urandom(size) for size in sizes]
        for file_id, data in zip(self.store.put_many(batch), batch, strict=True):
            self.files[file_id] = data

    @precondition(lambda self: self.files)
    @rule(index=st.integers(0, 10_000))
    def delete(self, index: int) -> None:
        file_id = sorted(self.files)[index % len(self.files)]
        self.store.delete(file_id)
        del self.files[file_id]
        self.gone.append(file_id)

    @rule(data=st.binary(max_size=3000))
    def put_appender(self, data: bytes) -> None:
        self.appenders[self.store.put_appender(data)] = bytearray(data)

    @precondition(lambda self: self.appenders)
    @rule(index=st.integers(0, 100), data=st.binary(max_size=3000))
    def append(self, index: int, data: bytes) -> None:
        file_id = sorted(self.appenders)[index % len(self.appenders)]
        self.store.append(file_id, data)
        self.appenders[file_id] += data

    @precondition(lambda self: self.gone)
    @rule(index=st.integers(0, 10_000))
    def deleted_stays_deleted(self, index: int) -> None:
        with pytest.raises(FileNotFound):
            self.store.get(self.gone[index % len(self.gone)])

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = Store(self.root, **TINY)
        assert self.store._pool.replayed_records == 0

    @invariant()
    def contents_match(self) -> None:
        for file_id, data in self.files.items():
            assert self.store.get(file_id) == data
            assert self.store.stat(file_id).crc32 == zlib.crc32(data)
        for file_id, data in self.appenders.items():
            assert self.store.get(file_id) == data
        report = self.store.check()
        assert report.ok, report.problems


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
