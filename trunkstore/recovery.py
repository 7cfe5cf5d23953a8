"""A trunk pool's state from its journal at open, and the snapshots that fold the journal up.

Opening loads the last snapshot (every container and its free extents), replays the journal records
written after it, clears what replayed frees left free (a crash may have come between a free's record
and the zeroing of its slot), and folds the result into a new snapshot so that the next open starts
there.  The pool calls these functions with its allocation lock held where its state is shared.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from typing import TYPE_CHECKING

from trunkstore import journal
from trunkstore.errors import CorruptData
from trunkstore.freespace import FreeSpaceError
from trunkstore.journal import ContainerState, Snapshot
from trunkstore.trunk import TrunkContainer

if TYPE_CHECKING:
    from trunkstore.trunkpool import TrunkPool


def recover(pool: TrunkPool) -> int:
    """Rebuild ``pool``'s containers and free space from the journal; returns how many records replayed."""
    snapshot, records = pool._journal.load()
    if snapshot is not None:
        pool.spaces.next_id = max(pool.spaces.next_id, pool.spaces.own_id_from(snapshot.next_trunk_id))
        for state in snapshot.containers:
            _check_store_path(pool, state.store_path, "snapshot")
            _adopt(pool, state.trunk_id, state.store_path, state.sub_high, state.sub_low, state.capacity)
            space = pool.spaces.of(state.trunk_id, state.store_path)
            try:
                space.add_container(state.trunk_id, state.capacity, free=False)
                for offset, size in state.free:
                    space.free(state.trunk_id, offset, size)
            except FreeSpaceError as exc:
                raise CorruptData(f"allocation snapshot contradicts itself: {exc}") from exc
    count = 0
    freed: list[tuple[int, int, int]] = []
    removed: list[str] = []
    for record in records:
        count += 1
        _apply(pool, record, removed)
        if record.kind == journal.FREE:
            freed.append((record.trunk_id, record.offset, record.size))
    _unlink_removed(pool, removed)
    _clear_freed_after_replay(pool, freed)
    if count:
        # Fold what was replayed into a snapshot so that the next open starts from here.
        with pool._lock:
            pool._take_snapshot()
    return count


def _clear_freed_after_replay(pool: TrunkPool, freed: list[tuple[int, int, int]]) -> None:
    """Zero what replayed ``F`` records freed and what is still free once every record is applied.

    The crash may have come between an ``F`` record and the zeroing of its slot; but a later ``A``
    record may have handed the same bytes to a new, acknowledged file, so only the parts still
    free at the end of the replay are cleared.
    """
    by_container: dict[int, list[tuple[int, int]]] = {}
    for trunk_id, offset, size in freed:
        by_container.setdefault(trunk_id, []).append((offset, offset + size))
    for trunk_id, ranges in by_container.items():
        container = pool.containers.get(trunk_id)
        if container is None:
            continue
        extents = pool.spaces.of_container(container).extents(trunk_id)
        starts = [e.offset for e in extents]
        for start, end in ranges:
            index = max(bisect.bisect_right(starts, start) - 1, 0)
            while index < len(extents) and extents[index].offset < end:
                extent = extents[index]
                low, high = max(start, extent.offset), min(end, extent.offset + extent.size)
                if low < high:
                    container.clear(low, high - low, extent.offset, extent.offset + extent.size)
                index += 1


def _unlink_removed(pool: TrunkPool, removed: list[str]) -> None:
    """Delete the files of the containers that replayed ``R`` records removed, once every record is
    applied: a replica's container can be removed and then created again under the same trunk id and
    path (its owner wrote into it again), and the file on disk is then the new container's."""
    in_use = {container.path for container in pool.containers.values()}
    for path in removed:
        if path not in in_use:
            unlink_quietly(path)


def _apply(pool: TrunkPool, record: journal.Record, removed: list[str]) -> None:
    """Replay one record; the paths of the containers it removes are added to ``removed``."""
    kind, trunk_id = record.kind, record.trunk_id
    try:
        if kind == journal.NEW_CONTAINER:
            _check_store_path(pool, record.store_path, "journal")
            _adopt(pool, trunk_id, record.store_path, record.sub_high, record.sub_low, record.size)
            pool.spaces.of(trunk_id, record.store_path).add_container(trunk_id, record.size)
            pool.spaces.saw(trunk_id)
        elif kind == journal.ALLOC:
            pool._space_of(trunk_id).reserve(trunk_id, record.offset, record.size)
        elif kind == journal.FREE:
            pool._space_of(trunk_id).free(trunk_id, record.offset, record.size)
        elif kind == journal.REMOVE_CONTAINER:
            container = pool._unregister(trunk_id)
            if container is not None:
                pool.spaces.of_container(container).remove_container(trunk_id)
                container.close()
                removed.append(container.path)
    except FreeSpaceError as exc:
        raise CorruptData(f"allocation journal contradicts itself: {exc}") from exc


def _check_store_path(pool: TrunkPool, store_path: int, source: str) -> None:
    if store_path >= len(pool.spaces.own):
        raise CorruptData(f"{source} names store path {store_path}, which is not configured")


def _adopt(pool: TrunkPool, trunk_id: int, store_path: int, sub_high: int, sub_low: int, capacity: int) -> None:
    layout = pool._layout
    path = layout.container_path(store_path, sub_high, sub_low, trunk_id)
    layout.ensure_data_dir(store_path, sub_high, sub_low)
    try:
        container = TrunkContainer.open(path, trunk_id, store_path, sub_high, sub_low, capacity)
    except FileNotFoundError:
        # Created but lost before its directory entry was synced: nothing acknowledged was in it
        # (data is synced before the records that publish it), so an empty container replaces it.
        container = TrunkContainer.create(path, trunk_id, store_path, sub_high, sub_low, capacity)
    pool._register(container)


def snapshot_of(pool: TrunkPool) -> Snapshot:
    """The allocation state as of the journal's next generation; the lock is held, nothing staged.

    Reservations not yet confirmed count as free (their records follow in the new generation, or
    never come); containers being removed count as wholly free.
    """
    containers: list[ContainerState] = []
    for trunk_id, container in sorted(pool.containers.items()):
        space = pool.spaces.of_container(container)
        extents = [(e.offset, e.size) for e in space.extents(trunk_id)]
        extents += [(offset, size) for (tid, offset), size in pool._unlogged.items() if tid == trunk_id]
        containers.append(_state(container, _merge(extents)))
    for container in pool._removing.values():
        containers.append(_state(container, ((0, container.size),)))
    return Snapshot(pool._journal.gen + 1, pool.spaces.next_id, tuple(containers))


def _state(container: TrunkContainer, free: tuple[tuple[int, int], ...]) -> ContainerState:
    return ContainerState(
        container.trunk_id, container.size, container.store_path, container.sub_high, container.sub_low, free
    )


def _merge(extents: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for offset, size in sorted(extents):
        if merged and merged[-1][0] + merged[-1][1] == offset:
            merged[-1][1] += size
        else:
            merged.append([offset, size])
    return tuple((offset, size) for offset, size in merged)


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
