"""Whole-store verification: :meth:`Store.check` (invariants) and :meth:`Store.scrub` (content)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from stat import S_ISREG
from typing import TYPE_CHECKING

from trunkstore import journal, plainfiles, reading
from trunkstore.checksum import crc32
from trunkstore.errors import FileNotFound, InvalidArgument
from trunkstore.fileid import FileId, FileKind
from trunkstore.freespace import FreeSpace, FreeSpaceError
from trunkstore.leftovers import PlainFile, SharedSlot, check_leftovers
from trunkstore.reports import CheckReport, ScrubReport
from trunkstore.slot import HEADER_SIZE, TYPE_SHARED
from trunkstore.slotstarts import next_valid_slot

if TYPE_CHECKING:
    from trunkstore.store import Store
    from trunkstore.trunkpool import TrunkPool


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
    # Slots marked shared by dedup, found on the same walk: check_leftovers looks for their holders.
    shared: list[SharedSlot] = []
    for container, run in pool.allocated_extents():
        slots, position = container.slots(run.offset, run.offset + run.size)
        while True:
            checked += len(slots)
            shared += [
                (container, offset, alloc) for offset, alloc, _, _ in slots if container.read(offset, 1) == TYPE_SHARED
            ]
            if position >= run.offset + run.size:
                break
            resume = next_valid_slot(container, position, run.offset + run.size)
            problems.append(
                f"trunk {container.trunk_id}: bytes {position}..{resume} are allocated but hold no valid slot"
            )
            leaks.append((container.trunk_id, position, resume - position))
            slots, position = container.slots(resume, run.offset + run.size)
    if fix:
        for trunk_id, offset, size in leaks:
            pool.wait(pool.free(trunk_id, offset, size, None))
            fixed.append(f"trunk {trunk_id}: freed {size} leaked bytes at {offset}")
    leftovers = check_leftovers(store, plain_files(store), shared, fix=fix)
    fixed += leftovers.removed
    return CheckReport(problems=problems, fixed=fixed, slots_checked=checked, leftovers=leftovers.found)


def scrub_store(store: Store, pool: TrunkPool) -> ScrubReport:
    """Read every trunk slot and every plain file that has a crc32 to check, whatever ``verify_crc_on_read`` says.

    Plain files with a crc32 are the normal ones, dedup's hard links among them; an appender's ID holds
    the crc32 of its first upload only and a slave's its master's, so they are passed over.  The names of
    one inode (dedup's links) share one reading: ``bytes_checked`` counts the bytes read, ``files_checked``
    the slots and file IDs checked, and a damaged inode is reported under each of its IDs.
    """
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
    # (size, crc32) of the inodes with several names that were read already, or why one cannot be read.
    linked: dict[tuple[int, int], tuple[int, int] | str] = {}
    for file_id, parsed, path, st in plain_files(store):
        if parsed.kind is not FileKind.NORMAL:
            continue
        content = linked.get((st.st_dev, st.st_ino))
        if content is None:
            try:
                content = plainfiles.crc32_of(path)
            except FileNotFound:
                continue  # deleted since it was found
            except OSError as exc:
                content = f"cannot be read: {exc.strerror or exc}"
            else:
                total += content[0]
            if st.st_nlink > 1:
                linked[st.st_dev, st.st_ino] = content
        files += 1
        problem = _plain_problem(parsed, file_id, content)
        if problem:
            corrupt.append(problem)
    return ScrubReport(files_checked=files, bytes_checked=total, corrupt=corrupt)


def plain_files(store: Store) -> Iterator[PlainFile]:
    """``(file ID, parsed ID, path, lstat)`` of every regular file in the data directories named as a file ID."""
    for index, directory in enumerate(store.layout.store_dirs):
        data_dir = os.path.join(directory, "data")
        for dirpath, _dirnames, filenames in os.walk(data_dir):
            for name in filenames:
                if name.isdigit():
                    continue  # a trunk container, checked slot by slot
                rel = os.path.relpath(os.path.join(dirpath, name), data_dir)
                file_id = f"{store.group}/M{index:02X}/{rel}"
                try:
                    parsed = store._parse(file_id)
                except InvalidArgument:
                    continue  # no file ID: not the store's
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue  # deleted since the directory was listed
                if S_ISREG(st.st_mode):
                    yield file_id, parsed, path, st


def _plain_problem(parsed: FileId, file_id: str, content: tuple[int, int] | str) -> str | None:
    """What is wrong with a normal file whose bytes have ``(size, crc32)``, or why they could not be read."""
    if isinstance(content, str):
        return f"{file_id}: {content}"
    size, crc = content
    if size != parsed.declared_size:
        return str(reading.size_failure(file_id, size, parsed.declared_size))
    if crc != parsed.crc32:
        return str(reading.crc_failure(file_id))
    return None
