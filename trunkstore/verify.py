"""Whole-store verification: :meth:`Store.check` (invariants) and :meth:`Store.scrub` (content)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from trunkstore import journal
from trunkstore.checksum import crc32
from trunkstore.freespace import FreeSpace, FreeSpaceError
from trunkstore.reports import CheckReport, ScrubReport
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED

if TYPE_CHECKING:
    from trunkstore.store import Store
    from trunkstore.trunk import TrunkContainer
    from trunkstore.trunkpool import TrunkPool


def _next_valid_slot(container: TrunkContainer, start: int, end: int) -> int:
    """The first offset after ``start`` holding a slot whose data matches its crc32 (or ``end``)."""
    data = container.read(start, end - start)
    for index in range(1, len(data) - HEADER_SIZE + 1):
        if data[index : index + 1] not in (TYPE_FILE, TYPE_SHARED):
            continue
        _kind, alloc, size, crc, _mtime, _ext = HEADER.unpack_from(data, index)
        if alloc >= size + HEADER_SIZE and index + alloc <= len(data):
            body = data[index + HEADER_SIZE : index + HEADER_SIZE + size]
            if crc32(body) == crc:
                return start + index
    return end


def _journal_state(pool: TrunkPool) -> dict[int, list[tuple[int, int]]]:
    """The free extents of every container as the journal on disk describes them."""
    snapshot, records = journal.read_journal(pool.journal_dir)
    spaces: dict[int, FreeSpace] = {}
    if snapshot is not None:
        for state in snapshot.containers:
            space = spaces[state.trunk_id] = FreeSpace(1)
            space.add_container(state.trunk_id, state.capacity, free=False)
            for offset, size in state.free:
                space.free(state.trunk_id, offset, size)
    for record in records:
        if record.kind == journal.NEW_CONTAINER:
            spaces[record.trunk_id] = FreeSpace(1)
            spaces[record.trunk_id].add_container(record.trunk_id, record.size)
        elif record.kind == journal.ALLOC:
            spaces[record.trunk_id].reserve(record.trunk_id, record.offset, record.size)
        elif record.kind == journal.FREE:
            spaces[record.trunk_id].free(record.trunk_id, record.offset, record.size)
        elif record.kind == journal.REMOVE_CONTAINER:
            spaces.pop(record.trunk_id, None)
    return {tid: [(e.offset, e.size) for e in space.extents(tid)] for tid, space in spaces.items()}


def check_store(store: Store, pool: TrunkPool, *, fix: bool) -> CheckReport:
    problems = pool.check()
    fixed: list[str] = []
    checked = 0
    store.sync()
    with pool.quiesced():
        try:
            on_disk = _journal_state(pool)
            live = pool.free_extents_by_container()
            if on_disk != live:
                differing = sorted(set(on_disk) ^ set(live) | {t for t in on_disk if on_disk[t] != live.get(t)})
                problems.append(f"journal on disk disagrees with the live allocation state (containers {differing})")
        except (FreeSpaceError, KeyError, OSError, ValueError) as exc:
            problems.append(f"journal cannot be replayed: {exc}")
    leaks: list[tuple[int, int, int]] = []
    for container, run in pool.allocated_extents():
        slots, broke_at = container.slots(run.offset, run.offset + run.size)
        checked += len(slots)
        position = broke_at
        while position < run.offset + run.size:
            resume = _next_valid_slot(container, position, run.offset + run.size)
            problems.append(
                f"trunk {container.trunk_id}: bytes {position}..{resume} are allocated but hold no valid slot"
            )
            leaks.append((container.trunk_id, position, resume - position))
            more, position = container.slots(resume, run.offset + run.size)
            checked += len(more)
    if fix:
        for trunk_id, offset, size in leaks:
            pool.wait(pool.free(trunk_id, offset, size, None))
            fixed.append(f"trunk {trunk_id}: freed {size} leaked bytes at {offset}")
    return CheckReport(problems=problems, fixed=fixed, slots_checked=checked)


def scrub_store(store: Store, pool: TrunkPool) -> ScrubReport:
    files = 0
    total = 0
    corrupt: list[str] = []
    for container, run in pool.allocated_extents():
        slots, _ = container.slots(run.offset, run.offset + run.size)
        for offset, _alloc, size, crc in slots:
            files += 1
            total += size
            if crc32(container.read(offset + HEADER_SIZE, size)) != crc:
                corrupt.append(f"trunk {container.trunk_id} slot at {offset} ({size} bytes)")
    for directory in store.layout.store_dirs:
        data_dir = os.path.join(directory, "data")
        for dirpath, _dirnames, filenames in os.walk(data_dir):
            for name in filenames:
                if name.isdigit():
                    continue  # a trunk container, scrubbed slot by slot above
                rel = os.path.relpath(os.path.join(dirpath, name), directory)
                index = store.layout.store_dirs.index(directory)
                file_id = f"{store.group}/M{index:02X}/{rel[5:]}"
                try:
                    stat = store.stat(file_id)
                except (OSError, ValueError):
                    continue
                if stat.kind.value != "normal":
                    continue
                files += 1
                total += stat.size
                try:
                    store.get(file_id)
                except OSError as exc:
                    corrupt.append(f"{file_id}: {exc}")
    return ScrubReport(files_checked=files, bytes_checked=total, corrupt=corrupt)
