"""What a crash between the steps of a change of several steps can leave behind, for :meth:`Store.check`.

Each such change is ordered so that a crash leaves every acknowledged file whole (see the functions
that make them); what it may leave besides is harmless to reads but takes room or rows for ever:

* a second name of an appender file: :func:`~trunkstore.appender.regenerate_name` links the new
  normal name before it removes the appender's, and nobody was given the new ID if it stopped between;
* a metadata row, or a dedup holder row, of a file already deleted: a delete removes the file first
  and its rows after;
* a slot shared by dedup that no holder names any more: the last holder's row goes before the slot.

``check()`` lists each among its ``leftovers`` (they break no invariant: ``ok`` stays true);
``check(fix=True)`` removes it, under the lock that the change it was left by
takes, after looking again, so a change running at the same time is never undone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trunkstore import fileid as fid
from trunkstore.diskio import fsync_dir
from trunkstore.errors import FileNotFound, InvalidArgument
from trunkstore.fileid import FileKind
from trunkstore.slot import TYPE_SHARED

if TYPE_CHECKING:
    from trunkstore.store import Store
    from trunkstore.trunk import TrunkContainer

#: ``(file ID, parsed ID, path, lstat)`` of a plain file.
PlainFile = tuple[str, fid.FileId, str, os.stat_result]
#: ``(container, offset, alloc_size)`` of a slot whose header marks it shared by dedup.
SharedSlot = tuple["TrunkContainer", int, int]


@dataclass
class Findings:
    found: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def check_leftovers(
    store: Store, plain_files: Iterable[PlainFile], shared_slots: Iterable[SharedSlot], *, fix: bool
) -> Findings:
    """Every plain file and every shared slot of the store are given, from the walks ``check()`` makes."""
    findings = Findings()
    holders = store._meta.holder_ids()
    _second_names(store, plain_files, fix, findings)
    _metadata_rows(store, fix, findings)
    _holder_rows(store, holders, fix, findings)
    _unheld_shared_slots(store, shared_slots, _held_slots(holders), fix, findings)
    return findings


def _second_names(store: Store, plain_files: Iterable[PlainFile], fix: bool, findings: Findings) -> None:
    """Normal files that are another name of an appender file's inode (nothing else links an appender)."""
    appenders: dict[tuple[int, int], fid.FileId] = {}
    normal: list[tuple[fid.FileId, str, os.stat_result]] = []
    for _file_id, parsed, path, st in plain_files:
        if st.st_nlink < 2:
            continue
        if parsed.kind is FileKind.APPENDER:
            appenders[st.st_dev, st.st_ino] = parsed
        elif parsed.kind is FileKind.NORMAL:
            normal.append((parsed, path, st))
    for parsed, path, st in normal:
        appender = appenders.get((st.st_dev, st.st_ino))
        if appender is None:
            continue
        findings.found.append(f"{parsed}: a second name of appender file {appender} (an interrupted regenerate)")
        if fix and _remove_second_name(store, appender, parsed, path):
            findings.removed.append(f"{parsed}: removed (the appender file {appender} stays)")


def _remove_second_name(store: Store, appender: fid.FileId, parsed: fid.FileId, path: str) -> bool:
    # The appender's lock is the one regenerate holds: it has finished or not started.
    with store._file_lock(appender.remote_filename):
        try:
            same = os.path.samestat(os.lstat(store.layout.file_path(appender)), os.lstat(path))
        except FileNotFoundError:
            return False  # renamed or deleted meanwhile: nothing is left over
        if not same:
            return False
        os.unlink(path)
        if store._durable:
            fsync_dir(os.path.dirname(path))
        store._meta.delete_meta(parsed.remote_filename)
    return True


def _metadata_rows(store: Store, fix: bool, findings: Findings) -> None:
    for remote in store._meta.meta_files():
        file_id = f"{store.group}/{remote}"
        if store.exists(file_id):
            continue
        findings.found.append(f"{file_id}: metadata of a file that does not exist")
        if fix:
            with store._file_lock(remote):
                # A file ID names one file only, ever: once it is gone, no change can bring it back.
                if not store.exists(file_id):
                    store._meta.delete_meta(remote)
                    findings.removed.append(f"{file_id}: metadata removed")


def _holder_rows(store: Store, holders: list[str], fix: bool, findings: Findings) -> None:
    for file_id in holders:
        if store.exists(file_id):
            continue
        findings.found.append(f"{file_id}: registered as a dedup holder but does not exist")
        if fix:
            with store._dedup_lock:  # deletions take it
                if not store.exists(file_id) and store._meta.drop_holder(file_id) is not None:
                    findings.removed.append(f"{file_id}: dedup holder row removed")


def _held_slots(holders: list[str]) -> set[tuple[int, int]]:
    """``(trunk_id, offset)`` of the slots that the holder IDs ``holders`` name."""
    held = set()
    for file_id in holders:
        try:
            trunk = fid.parse_file_id(file_id).trunk
        except InvalidArgument:
            continue
        if trunk is not None:
            held.add((trunk.trunk_id, trunk.offset))
    return held


def _unheld_shared_slots(
    store: Store, shared_slots: Iterable[SharedSlot], held: set[tuple[int, int]], fix: bool, findings: Findings
) -> None:
    pool = store._pool
    for container, offset, alloc in shared_slots:
        if (container.trunk_id, offset) in held:
            continue
        findings.found.append(f"trunk {container.trunk_id} slot at {offset}: shared, but no holder names it")
        if fix:
            with store._dedup_lock:  # registering a holder takes it
                if (container.trunk_id, offset) in _held_slots(store._meta.holder_ids()):
                    continue
                try:
                    header = pool.slot_header(container.trunk_id, offset)
                    if header[:1] != TYPE_SHARED:
                        continue
                    pool.wait(pool.free(container.trunk_id, offset, alloc, header))
                except FileNotFound:
                    continue  # freed meanwhile
            findings.removed.append(f"trunk {container.trunk_id} slot at {offset}: freed ({alloc} bytes)")
