"""recovery: a trunk pool's containers and free space rebuilt from its journal at open, and its snapshots."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trunkstore import journal, recovery
from trunkstore.config import StoreConfig
from trunkstore.errors import CorruptData
from trunkstore.journal import ContainerState, Journal, Snapshot
from trunkstore.layout import Layout
from trunkstore.slot import TYPE_FILE, pack_header
from trunkstore.trunk import TrunkContainer
from trunkstore.trunkpool import TrunkPool

CAPACITY = 4 << 20
#: The pool's own trunk ids are 1, 3, 5, ...; even ids are another storage's (replicas).
SETTINGS: dict[str, Any] = {
    "trunk_file_size": CAPACITY,
    "slot_max_size": 64 << 10,
    "sync_mode": "none",
    "trunk_id_start": 1,
    "trunk_id_step": 2,
}


def layout_of(root: Path, config: StoreConfig) -> Layout:
    return Layout(
        str(root),
        config.store_path_dirs(str(root)),
        config.subdir_count_per_path,
        config.file_distribute_path_mode,
        config.file_distribute_rotate_count,
    )


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """Where the pool under test keeps its files (for writing its journal and containers by hand)."""
    return layout_of(tmp_path / "store", StoreConfig(**SETTINGS))


@pytest.fixture
def open_pool(layout: Layout) -> Iterator[Callable[..., TrunkPool]]:
    """``open_pool(**settings)`` opens (and so recovers) a pool at ``layout``; all are closed afterwards."""
    pools: list[TrunkPool] = []

    def make(**settings: Any) -> TrunkPool:
        config = StoreConfig(**{**SETTINGS, **settings})
        pools.append(TrunkPool(layout_of(Path(layout.root), config), config))
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


def write_journal(layout: Layout, *records: bytes, snapshot: Snapshot | None = None) -> None:
    """The journal a crashed pool left: ``snapshot`` (if any) and then ``records``."""
    log = Journal(layout.journal_dir, durable=True)
    _old, old_records = log.load()
    assert list(old_records) == []
    if snapshot is not None:
        log.write_snapshot(snapshot)
    log.append(b"".join(records))
    log.sync()
    log.close()


def new(trunk_id: int, store_path: int = 0, high: int = 0, low: int = 0) -> bytes:
    return journal.encode_record(journal.NEW_CONTAINER, trunk_id, 0, CAPACITY, store_path, high, low)


def alloc(trunk_id: int, offset: int, size: int) -> bytes:
    return journal.encode_record(journal.ALLOC, trunk_id, offset, size)


def free(trunk_id: int, offset: int, size: int) -> bytes:
    return journal.encode_record(journal.FREE, trunk_id, offset, size)


def remove(trunk_id: int) -> bytes:
    return journal.encode_record(journal.REMOVE_CONTAINER, trunk_id, 0, 0)


def free_extents(pool: TrunkPool, trunk_id: int) -> list[tuple[int, int]]:
    space = pool.spaces.of_container(pool.containers[trunk_id])
    return [(extent.offset, extent.size) for extent in space.extents(trunk_id)]


def container_file(layout: Layout, trunk_id: int, high: int = 0, low: int = 0) -> TrunkContainer:
    """Container ``trunk_id``'s file as the crashed pool left it, open for writing its bytes."""
    layout.ensure_data_dir(0, high, low)
    return TrunkContainer.create(layout.container_path(0, high, low, trunk_id), trunk_id, 0, high, low, CAPACITY)


def slot_header(alloc_size: int, size: int) -> bytes:
    return pack_header(TYPE_FILE, alloc_size, size, 0, 0, bytes(7))


# ---- replaying the journal -----------------------------------------------------------------------------
def test_a_new_pool_replays_nothing_and_writes_no_snapshot(open_pool: Callable[..., TrunkPool]) -> None:
    pool = open_pool()
    assert pool.replayed_records == 0
    assert pool.containers == {}
    assert pool.spaces.next_id == 1
    assert sorted(os.listdir(pool.journal_dir)) == ["0000000000.log"]


def test_replayed_records_rebuild_the_containers_and_their_free_space(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    write_journal(
        layout,
        new(1, 0, 0x12, 0x34),
        alloc(1, 0, 512),
        alloc(1, 512, 1024),
        new(3, 0, 0x00, 0x01),
        alloc(3, 4096, 256),
        free(1, 0, 512),
    )
    pool = open_pool()
    assert pool.replayed_records == 6
    assert sorted(pool.containers) == [1, 3]
    first = pool.containers[1]
    assert first.path == layout.container_path(0, 0x12, 0x34, 1)
    assert (first.store_path, first.sub_high, first.sub_low, first.size) == (0, 0x12, 0x34, CAPACITY)
    assert free_extents(pool, 1) == [(0, 512), (1536, CAPACITY - 1536)]
    assert free_extents(pool, 3) == [(0, 4096), (4352, CAPACITY - 4352)]
    assert pool.spaces.next_id == 5


def test_a_container_file_lost_in_the_crash_is_created_empty(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    # Created, then lost before its directory entry was synced: nothing acknowledged was in it.
    write_journal(layout, new(1, 0, 0x00, 0x07))
    pool = open_pool()
    path = layout.container_path(0, 0x00, 0x07, 1)
    assert os.path.getsize(path) == CAPACITY
    assert pool.read(1, 0, 4096) == bytes(4096)
    assert free_extents(pool, 1) == [(0, CAPACITY)]


def test_a_container_file_keeps_its_slots(layout: Layout, open_pool: Callable[..., TrunkPool]) -> None:
    written = container_file(layout, 1)
    written.write_slot(1024, slot_header(512, 5), b"hello")
    written.close()
    write_journal(layout, new(1), alloc(1, 1024, 512))
    pool = open_pool()
    assert pool.read(1, 1024, 29) == slot_header(512, 5) + b"hello"
    assert pool.slot_header(1, 1024) == slot_header(512, 5)


def test_a_short_container_file_is_extended_to_its_capacity(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    layout.ensure_data_dir(0, 0, 0)
    path = layout.container_path(0, 0, 0, 1)
    with open(path, "wb") as handle:
        handle.write(slot_header(256, 3) + b"abc")
    write_journal(layout, new(1), alloc(1, 0, 256))
    pool = open_pool()
    assert os.path.getsize(path) == CAPACITY
    assert pool.read(1, 0, 28) == slot_header(256, 3) + b"abc\0"


def test_a_replayed_free_zeroes_the_slot_the_crash_left_behind(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    # The crash came after the F record and before the slot was zeroed.
    written = container_file(layout, 1)
    written.write_slot(0, slot_header(512, 400), b"f" * 400)
    written.write_slot(512, slot_header(512, 400), b"k" * 400)
    written.close()
    write_journal(layout, new(1), alloc(1, 0, 512), alloc(1, 512, 512), free(1, 0, 512))
    pool = open_pool()
    assert pool.read(1, 0, 512) == bytes(512)
    assert pool.read(1, 512, 424) == slot_header(512, 400) + b"k" * 400
    assert free_extents(pool, 1) == [(0, 512), (1024, CAPACITY - 1024)]


def test_the_replay_clears_only_what_is_still_free_after_every_record(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    # A later A record gave the start of the freed range to a new, acknowledged file: that part stays.
    written = container_file(layout, 1)
    written.write(0, b"o" * 8192)
    written.write_slot(0, slot_header(1024, 1000), b"n" * 1000)
    written.close()
    write_journal(layout, new(1), alloc(1, 0, 8192), free(1, 0, 8192), alloc(1, 0, 1024))
    pool = open_pool()
    assert pool.read(1, 0, 1024) == slot_header(1024, 1000) + b"n" * 1000
    assert pool.read(1, 1024, 8192) == bytes(8192)


def test_a_replayed_removal_closes_and_deletes_the_container(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    write_journal(layout, new(1), new(3, 0, 0, 1), alloc(3, 0, 256), free(3, 0, 256), remove(3))
    pool = open_pool()
    assert sorted(pool.containers) == [1]
    assert not os.path.exists(layout.container_path(0, 0, 1, 3))
    assert os.path.exists(layout.container_path(0, 0, 0, 1))
    assert pool.spaces.own[0].containers() == {1: CAPACITY}
    assert pool.spaces.next_id == 5  # a removed id is never handed out again


def test_a_replica_container_removed_and_created_again_keeps_its_file(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    # A replica's container (even id) emptied and removed, then created again at the same path when
    # its owner wrote into it again: the file on disk is the new container's, holding an acknowledged slot.
    header = slot_header(512, 5)
    container = container_file(layout, 2)
    container.write_slot(0, header, b"hello")
    container.close()
    write_journal(layout, new(2), alloc(2, 0, 512), free(2, 0, 512), remove(2), new(2), alloc(2, 0, 512))
    pool = open_pool()
    assert pool.replayed_records == 6
    assert pool.read(2, 0, len(header) + 5) == header + b"hello"
    assert free_extents(pool, 2) == [(512, CAPACITY - 512)]


def test_a_replica_container_moved_by_its_return_loses_only_its_old_file(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    container_file(layout, 2).close()
    container_file(layout, 2, 0, 7).close()
    write_journal(layout, new(2), remove(2), new(2, 0, 0, 7))
    pool = open_pool()
    assert pool.containers[2].path == layout.container_path(0, 0, 7, 2)
    assert not os.path.exists(layout.container_path(0, 0, 0, 2))
    assert os.path.exists(layout.container_path(0, 0, 7, 2))


def test_a_torn_last_record_is_left_out_of_the_replay(layout: Layout, open_pool: Callable[..., TrunkPool]) -> None:
    write_journal(layout, new(1), alloc(1, 0, 256), alloc(1, 256, 256)[:13])
    pool = open_pool()
    assert pool.replayed_records == 2
    assert free_extents(pool, 1) == [(256, CAPACITY - 256)]


# ---- snapshots at open ---------------------------------------------------------------------------------
def test_the_replay_is_folded_into_a_snapshot_so_the_next_open_replays_nothing(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    write_journal(layout, new(1, 0, 0, 5), alloc(1, 0, 512), alloc(1, 1024, 256))
    pool = open_pool()
    snapshot, records = journal.read_journal(layout.journal_dir)
    assert snapshot == Snapshot(1, 3, (ContainerState(1, CAPACITY, 0, 0, 5, ((512, 512), (1280, CAPACITY - 1280))),))
    assert records == []
    assert sorted(os.listdir(layout.journal_dir)) == ["0000000001.log", "snapshot"]
    pool.close()
    reopened = open_pool()
    assert reopened.replayed_records == 0
    assert free_extents(reopened, 1) == [(512, 512), (1280, CAPACITY - 1280)]


def test_a_snapshot_and_the_records_after_it_are_both_applied(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    state = ContainerState(3, CAPACITY, 0, 0x00, 0x02, ((0, 1024), (2048, CAPACITY - 2048)))
    write_journal(layout, alloc(3, 0, 256), snapshot=Snapshot(1, 5, (state,)))
    pool = open_pool()
    assert pool.replayed_records == 1
    assert pool.containers[3].path == layout.container_path(0, 0x00, 0x02, 3)
    assert free_extents(pool, 3) == [(256, 768), (2048, CAPACITY - 2048)]
    assert pool.spaces.next_id == 5


@pytest.mark.parametrize(("recorded", "next_id"), [(0, 2), (2, 2), (4, 5), (5, 5), (9, 11)])
def test_the_next_id_from_a_snapshot_rounds_up_into_the_own_ids(
    layout: Layout, open_pool: Callable[..., TrunkPool], recorded: int, next_id: int
) -> None:
    # The snapshot may come from a pool with other trunk_id_start / trunk_id_step settings.
    write_journal(layout, snapshot=Snapshot(1, recorded, ()))
    pool = open_pool(trunk_id_start=2, trunk_id_step=3)
    assert pool.replayed_records == 0
    assert pool.spaces.next_id == next_id


def test_containers_go_to_the_own_or_the_replica_side_of_their_id(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    snapshotted = (ContainerState(2, CAPACITY, 0, 0, 0, ((0, CAPACITY),)), ContainerState(3, CAPACITY, 0, 0, 0, ()))
    write_journal(layout, new(4, 0, 0, 1), new(5, 0, 0, 1), snapshot=Snapshot(1, 0, snapshotted))
    pool = open_pool(trunk_id_start=2, trunk_id_step=3)  # own ids 2, 5, 8, ...
    assert pool.spaces.own[0].containers() == {2: CAPACITY, 5: CAPACITY}
    assert pool.spaces.foreign[0].containers() == {3: CAPACITY, 4: CAPACITY}
    assert pool.spaces.next_id == 8  # replicas' ids never move it


# ---- damaged journals ----------------------------------------------------------------------------------
def test_a_record_naming_a_store_path_not_configured_is_corrupt(
    layout: Layout, open_pool: Callable[..., TrunkPool]
) -> None:
    write_journal(layout, new(1), new(3, store_path=1))
    with pytest.raises(CorruptData, match="store path 1, which is not configured") as info:
        open_pool()
    assert info.value.errno == errno.EIO


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ((new(1), alloc(1, 0, 512), alloc(1, 256, 512)), "range allocated twice"),
        ((new(1), alloc(1, 0, 512), free(1, 0, 512), free(1, 0, 512)), "range freed twice"),
        ((new(1), free(1, CAPACITY - 100, 512)), "free past the container's end"),
        ((alloc(9, 0, 512),), "allocation in a container never created"),
        ((new(1), new(1)), "container created twice"),
        ((new(1), alloc(1, 0, 512), remove(1)), "container removed while in use"),
    ],
)
def test_records_that_contradict_each_other_are_corrupt(
    layout: Layout, open_pool: Callable[..., TrunkPool], records: tuple[bytes, ...], why: str
) -> None:
    write_journal(layout, *records)
    with pytest.raises(CorruptData, match="allocation journal contradicts itself") as info:
        open_pool()
    assert info.value.errno == errno.EIO, why


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (ContainerState(1, CAPACITY, 1, 0, 0, ()), "snapshot names store path 1, which is not configured"),
        (ContainerState(1, CAPACITY, 0, 0, 0, ((0, 512), (256, 512))), "allocation snapshot contradicts itself"),
    ],
    ids=["store-path", "overlapping-free-extents"],
)
def test_a_snapshot_that_cannot_be_true_is_corrupt(
    layout: Layout, open_pool: Callable[..., TrunkPool], state: ContainerState, message: str
) -> None:
    write_journal(layout, snapshot=Snapshot(1, 3, (state,)))
    with pytest.raises(CorruptData, match=message) as info:
        open_pool()
    assert info.value.errno == errno.EIO


# ---- snapshots of a running pool -----------------------------------------------------------------------
def test_a_reservation_not_confirmed_counts_as_free_in_a_snapshot(open_pool: Callable[..., TrunkPool]) -> None:
    # Its A record follows in the snapshot's generation, or never comes.
    pool = open_pool()
    reservation = pool.reserve(0, 1000)
    assert (reservation.container.trunk_id, reservation.offset) == (1, 0)
    with pool._lock:
        pending = recovery.snapshot_of(pool)
    assert pending == Snapshot(pool._journal.gen + 1, 3, (ContainerState(1, CAPACITY, 0, 0, 0, ((0, CAPACITY),)),))
    pool.fill(reservation, slot_header(reservation.size, 1000 - 24), b"r" * 976)
    with pool._lock:
        confirmed = recovery.snapshot_of(pool)
    assert confirmed.containers[0].free == ((reservation.size, CAPACITY - reservation.size),)


def test_a_container_being_removed_counts_as_wholly_free_in_a_snapshot(open_pool: Callable[..., TrunkPool]) -> None:
    # With sync_mode "always" a replica's empty container keeps its file until its R record is durable.
    pool = open_pool(sync_mode="always")
    header = slot_header(512, 100)
    reservation = pool.reserve_at(2, 0, 512, home=(0, 0, 3))
    pool.wait(pool.fill(reservation, header, b"p" * 100))
    pool.wait(pool.free(2, 0, 512, header))
    assert 2 not in pool.containers
    with pool._lock:
        snapshot = recovery.snapshot_of(pool)
    assert snapshot.containers == (ContainerState(2, CAPACITY, 0, 0, 3, ((0, CAPACITY),)),)


@pytest.mark.parametrize(
    ("extents", "merged"),
    [
        ([], ()),
        ([(0, 10)], ((0, 10),)),
        ([(10, 5), (0, 10)], ((0, 15),)),
        ([(0, 10), (11, 4), (15, 5), (30, 1)], ((0, 10), (11, 9), (30, 1))),
    ],
)
def test_merge_joins_touching_extents_in_offset_order(
    extents: list[tuple[int, int]], merged: tuple[tuple[int, int], ...]
) -> None:
    assert recovery._merge(extents) == merged


def test_unlink_quietly_removes_a_file_and_ignores_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "000001"
    path.write_bytes(b"x")
    recovery.unlink_quietly(str(path))
    assert not path.exists()
    recovery.unlink_quietly(str(path))
    assert list(tmp_path.iterdir()) == []
