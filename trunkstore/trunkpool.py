"""The trunk containers of one store: allocation, the allocation journal, and durability.

Write order, for crash safety (as bbolt does it):

1. a slot is *reserved* in the in-memory free-space tree (nothing on disk yet);
2. the caller writes the slot's header and data into the container;
3. the slot is *confirmed*: its ``A`` record is staged;
4. a commit syncs the dirty containers (data on disk), then appends the staged records to the
   journal and syncs it (the allocation published), and only then acknowledges the writers.

Freeing runs the other way round: the ``F`` record is made durable first, then the slot is zeroed (whole
pages punched out of the file) and only then returned to the free-space tree, so a crash can never
leave a slot both reusable and still holding the old file's header.  Replaying the journal re-zeroes
every freed range, which makes a crash between the record and the zeroing harmless.

With ``sync_mode="always"`` concurrent writers share commits (group commit).  With ``"none"`` and
``"interval"`` the records are written at once (so a killed process loses nothing the OS has) and
synced never or in the background.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from trunkstore import journal, recovery
from trunkstore.buffers import Bytes
from trunkstore.config import StoreConfig
from trunkstore.errors import CorruptData, FileNotFound, InvalidArgument, SlotConflict, StoreClosed, StoreFull
from trunkstore.fastpath import SlotMap
from trunkstore.freespace import Extent, FreeSpace, FreeSpaceError
from trunkstore.groupcommit import GroupCommit
from trunkstore.journal import Journal
from trunkstore.layout import Layout
from trunkstore.poolspace import PoolSpace
from trunkstore.recovery import unlink_quietly as _unlink_quietly
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED
from trunkstore.slotstarts import SlotStarts, walk_starts
from trunkstore.staging import Staged
from trunkstore.trunk import TrunkContainer

#: Removed containers are closed a batch at a time, at a snapshot or when this many more were removed.
_RETIRED_BATCH = 256


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reserved slot: write its bytes, then :meth:`TrunkPool.confirm` or :meth:`TrunkPool.release`."""

    container: TrunkContainer
    offset: int
    size: int


class TrunkPool:
    """Every trunk container of a store and the state of their space."""

    def __init__(self, layout: Layout, config: StoreConfig) -> None:
        self._layout = layout
        self._config = config
        self._mode = config.sync_mode
        self._lock = threading.Lock()
        self._group = config.group_name
        # Free space per store path, of the store's own containers and of replicas (see PoolSpace).
        self.spaces = PoolSpace(
            len(layout.store_dirs), config.slot_min_size, config.trunk_id_start, config.trunk_id_step
        )
        self.containers: dict[int, TrunkContainer] = {}
        #: The open containers' memory maps, for the lock-free read fast path.
        self.slot_map = SlotMap()
        #: Where the live slots start (see :mod:`trunkstore.slotstarts`).
        self._starts = SlotStarts(self.slot_map)
        self._journal = Journal(layout.journal_dir, durable=self._mode != "none")
        # Staged, not yet journaled (always mode): the records, the containers and directories to sync
        # before them, and the work to do once they are durable.
        self._staged = Staged()
        # Slots reserved whose A record is not journaled yet, and slots whose F record is staged.
        self._unlogged: dict[tuple[int, int], int] = {}
        self._freeing: set[tuple[int, int]] = set()
        # Containers being removed (R record staged), and closed ones whose descriptors are kept open
        # for a while so that a concurrent reader never reads through a recycled descriptor.
        self._removing: dict[int, TrunkContainer] = {}
        self._retired: list[TrunkContainer] = []
        self._retired_old: list[TrunkContainer] = []
        self._commit = GroupCommit(self._flush)
        self._broken: BaseException | None = None
        self._closed = False
        self._syncer: threading.Thread | None = None
        self._stop_syncer = threading.Event()
        self.replayed_records = recovery.recover(self)
        if self._mode == "interval":
            self._syncer = threading.Thread(target=self._sync_loop, name="trunkstore-sync", daemon=True)
            self._syncer.start()

    def set_id_prefix(self, group: str) -> None:
        """Give every container (now and later) the ID prefix of its directory in ``group``."""
        self._group = group
        for container in self.containers.values():
            self._set_prefix(container)

    def _set_prefix(self, container: TrunkContainer) -> None:
        container.id_prefix = (
            f"{self._group}/M{container.store_path:02X}/{container.sub_high:02X}/{container.sub_low:02X}/"
        )

    def _register(self, container: TrunkContainer) -> None:
        self._set_prefix(container)
        self.containers[container.trunk_id] = container

    def _unregister(self, trunk_id: int) -> TrunkContainer | None:
        self._starts.forget(trunk_id)
        return self.containers.pop(trunk_id, None)

    def _slot_starts(self, container: TrunkContainer) -> set[int]:
        """Where the live slots of ``container`` start, learnt on first use; the lock is held."""
        starts = self._starts.known(container.trunk_id)
        if starts is None:
            starts = self._walk_starts(container)
            self._starts.learn(container, starts)
        return starts

    def _walk_starts(self, container: TrunkContainer) -> set[int]:
        return walk_starts(container, self.spaces.of_container(container).allocated(container.trunk_id), self._unlogged)

    def is_slot(self, trunk_id: int, offset: int) -> bool:
        """Whether a live slot starts at ``trunk_id:offset`` (``O(1)`` once the container is known)."""
        starts = self._starts.known(trunk_id)
        if starts is None:
            with self._lock:
                container = self.containers.get(trunk_id)
                if container is None:
                    return False
                starts = self._slot_starts(container)
        return offset in starts

    def _space_of(self, trunk_id: int) -> FreeSpace:
        container = self.containers.get(trunk_id)
        if container is None:
            raise FreeSpaceError(f"unknown container {trunk_id}")
        return self.spaces.of_container(container)

    # ---- allocation -------------------------------------------------------------------------------
    def reserve(self, store_path: int, size: int) -> Reservation:
        """Reserve a slot of at least ``size`` bytes in ``store_path``, creating a container if needed."""
        with self._lock:
            self._check_usable()
            extent = self._allocate(store_path, size)
            self._unlogged[(extent.trunk_id, extent.offset)] = extent.size
            return Reservation(self.containers[extent.trunk_id], extent.offset, extent.size)

    def _allocate(self, store_path: int, size: int) -> Extent:
        """Best fit in ``store_path``, creating a container when nothing fits; the lock is held."""
        space = self.spaces.own[store_path]
        extent = space.allocate(size)
        if extent is None:
            self._create_container(store_path)
            extent = space.allocate(size)
            if extent is None:  # pragma: no cover - slot_max_size <= trunk_file_size / 2
                raise StoreFull(f"no slot of {size} bytes even in a new container")
        return extent

    def write_slot(
        self, store_path: int, alloc: int, file_size: int, crc: int, mtime: int, ext7: bytes, data: Bytes
    ) -> tuple[TrunkContainer, int, int, int]:
        """Allocate, write and publish one small file's slot under a single hold of the lock.

        For files small enough that writing them while holding the lock costs less than taking it
        twice.  Returns ``(container, offset, alloc_size, ticket)``.
        """
        with self._lock:
            if self._broken is not None or self._closed:
                self._check_usable()
            space = self.spaces.own[store_path]
            extent = space.allocate(alloc) or self._allocate(store_path, alloc)
            trunk_id, offset, size = extent
            container = self.containers[trunk_id]
            try:
                container.write_slot(offset, HEADER.pack(TYPE_FILE, size, file_size, crc, mtime, ext7), data)
            except OSError as exc:
                space.free(trunk_id, offset, size)
                if exc.errno == errno.ENOSPC:
                    raise StoreFull(f"file system full while writing trunk {trunk_id}") from exc
                raise
            self._starts.started(trunk_id, offset)
            self._staged.dirty.add(container)
            record = journal.encode_record(journal.ALLOC, trunk_id, offset, size)
            if self._mode == "always":
                self._staged.records += record
            else:
                # _log and _maybe_snapshot, spelt out on the upload hot path.
                log = self._journal
                log.append(record)
                if log.records_in_gen >= self._config.snapshot_every:
                    self._take_snapshot()
                return container, offset, size, 0
        return container, offset, size, self._commit.ticket()

    def write_slot_from_file(
        self, store_path: int, alloc: int, file_size: int, crc: int, mtime: int, ext7: bytes, source_fd: int
    ) -> tuple[TrunkContainer, int, int, int]:
        """As :meth:`write_slot`, the data copied from the file ``source_fd`` outside the lock.

        For files too large to hold in memory or to write while holding the lock.
        """
        reservation = self.reserve(store_path, alloc)
        header = HEADER.pack(TYPE_FILE, reservation.size, file_size, crc, mtime, ext7)
        ticket = self.fill(reservation, header, None, source_fd, file_size)
        return reservation.container, reservation.offset, reservation.size, ticket

    def fill(
        self, reservation: Reservation, header: bytes, data: Bytes | None, source_fd: int = -1, count: int = 0
    ) -> int:
        """Write a reserved slot's header and data (``data``, or ``count`` bytes from the start of the file
        ``source_fd``) and :meth:`confirm` it; the reservation is released if that fails.  Returns the ticket."""
        container = reservation.container
        try:
            if data is not None:
                container.write_slot(reservation.offset, header, data)
            else:
                container.write_slot_from(reservation.offset, header, source_fd, count)
            return self.confirm(reservation)
        except BaseException as exc:
            self.release(reservation)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise StoreFull(f"file system full while writing trunk {container.trunk_id}") from exc
            raise

    def reserve_at(
        self, trunk_id: int, offset: int, size: int, home: tuple[int, int, int] | None = None
    ) -> Reservation:
        """Reserve exactly ``[offset, offset + size)`` of container ``trunk_id``: a replica's slot.

        ``home`` is ``(store_path, sub_high, sub_low)``: where the container must be, and where it is
        created (journaled like any new container) if this store does not have it.  Raises
        :class:`SlotConflict` if the container is elsewhere or the range is not wholly free,
        :class:`FileNotFound` if there is no such container and no ``home``.
        """
        if offset < 0 or size <= 0 or offset + size > self._config.trunk_file_size:
            raise InvalidArgument(f"slot {trunk_id}:{offset}+{size} lies outside a trunk container")
        waited = False
        while True:
            with self._lock:
                self._check_usable()
                # A container whose removal is not durable yet keeps its file until then; a slot being
                # freed is free once its record is (both happen only with sync_mode="always").
                if trunk_id not in self._removing:
                    try:
                        return self._reserve_exact(trunk_id, offset, size, home)
                    except SlotConflict:
                        if waited or not any(key[0] == trunk_id for key in self._freeing):
                            raise
                        waited = True
            self._commit.wait(self._commit.ticket())

    def _reserve_exact(self, trunk_id: int, offset: int, size: int, home: tuple[int, int, int] | None) -> Reservation:
        container = self.containers.get(trunk_id)
        if container is None:
            if home is None:
                raise FileNotFound(f"no trunk container {trunk_id}")
            container = self._create_container_at(trunk_id, *home)
        elif home is not None and (container.store_path, container.sub_high, container.sub_low) != home:
            raise SlotConflict(f"trunk container {trunk_id} is in {container.id_prefix}, not where the ID says")
        try:
            self.spaces.of_container(container).reserve(trunk_id, offset, size)
        except FreeSpaceError as exc:
            raise SlotConflict(f"slot {trunk_id}:{offset}+{size} is not free: {exc}") from None
        self._unlogged[(trunk_id, offset)] = size
        return Reservation(container, offset, size)

    def _create_container(self, store_path: int) -> None:
        """A new container of this store's own, at its next trunk id that no container has."""
        trunk_id = self.spaces.new_id(lambda taken: taken in self.containers or taken in self._removing)
        high, low = self._layout.next_subdir(store_path)
        self._create_container_at(trunk_id, store_path, high, low)

    def _create_container_at(self, trunk_id: int, store_path: int, high: int, low: int) -> TrunkContainer:
        """Create, register and journal an empty container ``trunk_id`` in ``data/HH/HH``; the lock is held."""
        self.spaces.saw(trunk_id)
        directory = self._layout.ensure_data_dir(store_path, high, low)
        path = self._layout.container_path(store_path, high, low, trunk_id)
        capacity = self._config.trunk_file_size
        container = TrunkContainer.create(path, trunk_id, store_path, high, low, capacity)
        self._register(container)
        self._starts.learn(container, set())
        self.spaces.of(trunk_id, store_path).add_container(trunk_id, capacity)
        self._log(journal.encode_record(journal.NEW_CONTAINER, trunk_id, 0, capacity, store_path, high, low))
        self._staged.new_dirs.add(directory)
        return container

    def confirm(self, reservation: Reservation) -> int:
        """Publish a written slot.  Returns a ticket for :meth:`wait` (0: nothing to wait for)."""
        container, offset, size = reservation.container, reservation.offset, reservation.size
        with self._lock:
            self._check_usable()
            del self._unlogged[(container.trunk_id, offset)]
            self._starts.started(container.trunk_id, offset)
            self._staged.dirty.add(container)
            self._log(journal.encode_record(journal.ALLOC, container.trunk_id, offset, size))
            if self._mode != "always":
                self._maybe_snapshot()
                return 0
        return self._commit.ticket()

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose write failed (another storage's container goes if now empty)."""
        container = reservation.container
        with self._lock:
            if self._unlogged.pop((container.trunk_id, reservation.offset), None) is None:
                return
            space = self.spaces.of_container(container)
            space.free(container.trunk_id, reservation.offset, reservation.size)
            if space is not self.spaces.own[container.store_path] and space.is_empty_container(container.trunk_id):
                self._remove_container(container)

    def wait(self, ticket: int) -> None:
        if ticket:
            self._commit.wait(ticket)

    def free(self, trunk_id: int, offset: int, size: int, expected_header: bytes | None) -> int:
        """Free the slot at ``trunk_id:offset``, first checking that it still holds ``expected_header``.

        With a header, a live slot must start exactly at ``offset`` (header-like bytes inside a file
        are no slot); without one, any allocated range is freed (repairs).  The checks and the staging
        happen under one lock, so a slot freed and reused meanwhile is never freed again.  Returns a
        ticket for :meth:`wait`.  Raises :class:`FileNotFound` when the slot does not hold that file.
        """
        with self._lock:
            if self._broken is not None or self._closed:
                self._check_usable()
            container = self.containers.get(trunk_id)
            key = (trunk_id, offset)
            if (
                container is None
                or key in self._freeing
                or key in self._unlogged
                or offset + size > container.size
                or (
                    # A live slot starting at offset whose header (its alloc_size included) is the
                    # expected one: then [offset, offset + size) is exactly that slot, allocated.
                    self.spaces.of_container(container).is_free(trunk_id, offset, size)
                    if expected_header is None
                    else offset not in self._slot_starts(container)
                    or expected_header[1:5] != size.to_bytes(4, "big")
                    or container.read(offset, HEADER_SIZE) != expected_header
                )
            ):
                raise FileNotFound(f"no file at trunk {trunk_id} offset {offset}")
            self._freeing.add(key)
            self._log(journal.encode_record(journal.FREE, trunk_id, offset, size))
            if self._mode == "always":
                self._staged.frees.append(Extent(trunk_id, offset, size))
            else:
                self._release_freed([Extent(trunk_id, offset, size)])
                self._maybe_snapshot()
                return 0
        return self._commit.ticket()

    def _release_freed(self, extents: list[Extent]) -> None:
        """Zero freed slots and return them to the tree; their F records are written.  Lock held.

        The slot is merged first, to learn the whole free run around it (pages that straddled a
        neighbour freed earlier can now be punched); it cannot be reallocated before its bytes are
        cleared, as the lock is held until then.
        """
        for extent in extents:
            container = self.containers[extent.trunk_id]
            space = self.spaces.of_container(container)
            merged = space.free(extent.trunk_id, extent.offset, extent.size)
            container.clear(extent.offset, extent.size, merged.offset, merged.offset + merged.size)
            self._freeing.discard((extent.trunk_id, extent.offset))
            self._starts.ended(extent.trunk_id, extent.offset)
            # An empty container is removed, except the last of this store's own in a store path (the
            # next upload would create it again); another storage's is removed as soon as it is empty.
            if space.is_empty_container(extent.trunk_id) and (
                space is not self.spaces.own[container.store_path] or len(space.containers()) > 1
            ):
                self._remove_container(container)

    def _remove_container(self, container: TrunkContainer) -> None:
        trunk_id = container.trunk_id
        self.spaces.of_container(container).remove_container(trunk_id)
        self._unregister(trunk_id)
        self._staged.dirty.discard(container)
        self._removing[trunk_id] = container
        self._log(journal.encode_record(journal.REMOVE_CONTAINER, trunk_id, 0, 0))
        if self._mode == "always":
            self._staged.unlinks.append(container)
        else:
            self._unlink(container)

    def _unlink(self, container: TrunkContainer) -> None:
        _unlink_quietly(container.path)
        self._removing.pop(container.trunk_id, None)
        self._retired.append(container)
        if len(self._retired) >= _RETIRED_BATCH:
            # Many removals between snapshots (other storages' containers come and go with their
            # owners' writes): close the older batch now rather than keep a descriptor per removal.
            self._close_retired()

    def _close_retired(self) -> None:
        for old in self._retired_old:
            old.close()
        self._retired_old, self._retired = self._retired, []

    # ---- journaling -------------------------------------------------------------------------------
    def _log(self, record: bytes) -> None:
        """Stage (always mode) or write (other modes) one record; the lock is held."""
        if self._mode == "always":
            self._staged.records += record
            return
        self._journal.append(record)

    def _maybe_snapshot(self) -> None:
        if self._journal.records_in_gen >= self._config.snapshot_every:
            self._take_snapshot()

    def _flush(self) -> None:
        """One group-commit round: data, then records, then what waited for the records."""
        with self._lock:
            batch = self._staged.take()
        self._write_durably(batch)
        with self._lock:
            self._after_commit(batch)
            self._maybe_snapshot()

    def _write_durably(self, batch: Staged) -> None:
        try:
            batch.write_durably(self._journal)
        except OSError as exc:
            # What is on disk is now unknown: refuse further writes rather than guess.
            self._broken = exc
            raise

    def _after_commit(self, batch: Staged) -> None:
        for container in batch.unlinks:
            self._unlink(container)
        self._release_freed(batch.frees)

    def _drain(self) -> None:
        """Journal everything staged and finish what waited for it, all under the held lock."""
        while self._staged.waiting:
            batch = self._staged.take()
            self._write_durably(batch)
            self._after_commit(batch)

    def sync(self) -> None:
        """Make everything written so far durable, whatever the sync mode."""
        if self._closed:
            raise StoreClosed("the store is closed")
        if self._mode == "always":
            self._commit.wait(self._commit.ticket())
            return
        with self._lock:
            containers = list(self.containers.values())
        for container in containers:
            container.datasync()
        with self._lock:
            self._journal.sync()

    def _sync_loop(self) -> None:
        while not self._stop_syncer.wait(self._config.sync_interval):
            try:
                self.sync()
            except (OSError, StoreClosed) as exc:
                self._broken = exc
                return

    def _take_snapshot(self) -> None:
        """Write the allocation state as of a new journal generation; the lock is held.

        Everything staged is journaled first, so the snapshot is exactly the journaled state (see
        :func:`trunkstore.recovery.snapshot_of`).
        """
        self._drain()
        self._journal.write_snapshot(recovery.snapshot_of(self))
        self._close_retired()

    def mark_shared(self, trunk_id: int, offset: int) -> None:
        """Mark a slot as shared by several IDs (dedup), durably unless syncing is off."""
        with self._lock:
            container = self.containers.get(trunk_id)
            if container is None or self.spaces.of_container(container).is_free(trunk_id, offset):
                raise FileNotFound(f"no slot at trunk {trunk_id} offset {offset}")
            container.write(offset, TYPE_SHARED)
        if self._mode != "none":
            container.datasync()

    # ---- reading and inspection -------------------------------------------------------------------
    def read(self, trunk_id: int, offset: int, length: int) -> bytes:
        container = self.containers.get(trunk_id)
        if container is None or offset + length > container.size:
            raise FileNotFound(f"no trunk container {trunk_id} holding offset {offset}")
        try:
            return container.read(offset, length)
        except ValueError as exc:  # the map was closed by a concurrent removal
            raise FileNotFound(f"trunk container {trunk_id} was removed") from exc

    def slot_header(self, trunk_id: int, offset: int) -> bytes:
        """The header of the live slot starting at ``trunk_id:offset``; :class:`FileNotFound` if none does."""
        if not self.is_slot(trunk_id, offset):
            raise FileNotFound(f"no slot starts at trunk {trunk_id} offset {offset}")
        return self.read(trunk_id, offset, HEADER_SIZE)

    def is_allocated(self, trunk_id: int, offset: int, size: int) -> bool:
        with self._lock:
            container = self.containers.get(trunk_id)
            if container is None or (trunk_id, offset) in self._freeing:
                return False
            return not self.spaces.of_container(container).is_free(trunk_id, offset, size)

    def allocated_extents(self) -> Iterator[tuple[TrunkContainer, Extent]]:
        """Every allocated run of every container (a run may hold several slots back to back)."""
        with self._lock:
            runs = [
                (container, run)
                for trunk_id, container in sorted(self.containers.items())
                for run in self.spaces.of_container(container).allocated(trunk_id)
            ]
        yield from runs

    def check(self) -> list[str]:
        """Problems found in the allocation state (empty when every invariant holds)."""
        with self._lock:
            problems = self.spaces.check(lambda trunk_id: self.containers.get(trunk_id) is not None)
            for trunk_id, container in self.containers.items():
                if not self.spaces.of_container(container).has_container(trunk_id):
                    problems.append(f"container {trunk_id} open but has no free-space entry")
                if not os.path.exists(container.path):
                    problems.append(f"container {trunk_id} file {container.path} is missing")
                known = self._starts.known(trunk_id)
                if known is not None and known != self._walk_starts(container):
                    problems.append(f"container {trunk_id}: the known slot starts differ from the slot headers")
        return problems

    @property
    def journal_dir(self) -> str:
        return self._journal.directory

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[None]:
        """Hold the allocation lock with everything staged journaled (for verification)."""
        with self._lock:
            self._drain()
            yield

    def free_extents_by_container(self) -> dict[int, list[tuple[int, int]]]:
        """``{trunk_id: [(offset, size), ...]}``; the lock is held by the caller (see :meth:`quiesced`)."""
        result = {}
        for trunk_id, container in self.containers.items():
            result[trunk_id] = [(e.offset, e.size) for e in self.spaces.of_container(container).extents(trunk_id)]
        for trunk_id, container in self._removing.items():
            result[trunk_id] = [(0, container.size)]
        return result

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "trunk_containers": len(self.containers),
                "trunk_free_bytes": self.spaces.free_bytes(),
                "trunk_own_free_bytes": self.spaces.own_free_bytes(),
                "trunk_capacity_bytes": sum(c.size for c in self.containers.values()),
                "trunk_free_extents": self.spaces.free_extents(),
                "journal_generation": self._journal.gen,
            }

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")
        if self._broken is not None:
            raise CorruptData(f"a sync failed earlier ({self._broken}); reopen the store") from self._broken

    def close(self) -> None:
        if self._closed:
            return
        self._stop_syncer.set()
        if self._syncer is not None:
            self._syncer.join()
        try:
            if self._broken is None:
                self.sync()
                with self._lock:
                    self._take_snapshot()
        finally:
            with self._lock:
                self._closed = True
                for container in [*self.containers.values(), *self._removing.values()]:
                    container.close()
                for container in [*self._retired, *self._retired_old]:
                    container.close()
                self._journal.close()
