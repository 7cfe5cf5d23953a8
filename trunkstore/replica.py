"""Replicas: files and changes made by another storage of the group, applied here at the same file IDs.

A storage that stores a file gives it an ID; its peers must then store the same bytes under exactly
that ID, so that the ID reads back on each of them.  Where the file goes follows from the ID alone:

* a trunk file's ID names its slot (``trunk_id``, ``offset``, ``alloc_size``) and its container's
  directory.  The container is created there if this store does not have it yet (journaled like any
  new container), exactly that slot is reserved, and header and data are written and published as a
  normal trunk write is, group commit included.  Trunk ids are partitioned between the storages of a
  group (``trunk_id_start``, ``trunk_id_step``): a store allocates only in its own containers, so the
  slot is free here unless the file is here already (design point 1);
* every other file (large, appender, slave) is a plain file at the path its ID names.

Before anything is stored: the ID must be well formed, of this store's group and store paths
(:class:`InvalidFileId`, which also covers a slot that does not fit a container), and the bytes must be
what the ID records: size and crc32 for normal and trunk files (:class:`ContentMismatch`).  An appender
file's ID records no size and the crc32 of its first upload; a slave file's ID part is its master's, so
neither is checked for them.

Replication delivers each change at least once.  A file stored here already raises
:class:`AlreadyExists` and changes nothing; a slot that holds another live file raises
:class:`SlotConflict` and leaves that file as it is, unless the store deduplicates and the slot holds the
same bytes (the owner gave one slot to several uploads): the ID is then one more holder of the slot.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trunkstore import appender, dedup, plainfiles, reading, upload
from trunkstore.buffers import Bytes
from trunkstore.checksum import crc32
from trunkstore.diskio import fsync_dir
from trunkstore.errors import (
    AlreadyExists,
    ContentMismatch,
    FileNotFound,
    InvalidArgument,
    InvalidFileId,
    NotAppender,
    SlotConflict,
)
from trunkstore.fileid import APPENDER_FLAG, TRUNK_INFO, FileId, FileKind
from trunkstore.plainfiles import Spooled, SpoolWriter
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED
from trunkstore.upload import MEMORY_LIMIT, Upload

if TYPE_CHECKING:
    from trunkstore.store import Store


_SLOT_KEY = struct.Struct(">5s12sII")
#: The directory part of a file ID (``Mxx/HH/HH/``) and its extension part.
_DIRECTORY = re.compile(rb"M([0-9A-F]{2})/([0-9A-F]{2})/([0-9A-F]{2})/")
_TAIL = re.compile(rb"[A-Za-z0-9_.-]{7}")
_HEX = {f"{value:02X}".encode(): value for value in range(256)}
_APPENDER_HIGH = APPENDER_FLAG >> 32


@dataclass(frozen=True, slots=True)
class ReplicaTarget:
    """A checked replica: where its bytes go and what they must be.  Made by :func:`target`."""

    store: Store
    file_id: str
    parsed: FileId
    size: int

    @property
    def admitted(self) -> int:
        """The bytes it takes on disk: its slot, or its size."""
        trunk = self.parsed.trunk
        return trunk.alloc_size if trunk is not None else self.size

    def check_crc(self, crc: int) -> None:
        """The received bytes' crc32 must be the ID's (normal and trunk files)."""
        kind = self.parsed.kind
        if kind in (FileKind.NORMAL, FileKind.TRUNK) and crc != self.parsed.crc32:
            raise ContentMismatch(
                f"{self.file_id}: the bytes received have crc32 {crc:08x}, the ID says {self.parsed.crc32:08x}"
            )

    def commit(self, buffer: bytearray | None, writer: SpoolWriter | None) -> str:
        """Store what an :class:`Upload` received (``buffer`` in memory, or spooled by ``writer``)."""
        if buffer is not None:
            self.check_crc(crc32(buffer))
            write_slot(self, buffer, None)
            return self.file_id
        assert writer is not None
        store = self.store
        in_slot = self.parsed.trunk is not None
        # A slot's container is synced before the slot is published: its spool needs no sync.
        spooled = writer.finish(durable=store._durable and not in_slot)
        try:
            self.check_crc(spooled.crc32)
            if in_slot:
                write_slot(self, None, spooled)
            else:
                parsed = self.parsed
                directory = store.layout.ensure_data_dir(parsed.store_path, parsed.sub_high, parsed.sub_low)
                try:
                    plainfiles.publish(spooled, os.path.join(directory, parsed.name), durable=store._durable)
                except FileExistsError:
                    raise AlreadyExists(f"{self.file_id} is stored already") from None
        finally:
            plainfiles.discard(spooled)
        return self.file_id


def target(store: Store, file_id: str, size: int) -> ReplicaTarget:
    """Check a replica of ``size`` bytes before anything is received or stored."""
    parsed = store._parse(file_id)
    if parsed.kind in (FileKind.NORMAL, FileKind.TRUNK) and size != parsed.declared_size:
        raise ContentMismatch(f"{file_id}: {size} bytes received, the ID says {parsed.declared_size}")
    trunk = parsed.trunk
    if trunk is not None and (
        trunk.trunk_id < 1
        or trunk.alloc_size < size + HEADER_SIZE
        or trunk.offset + trunk.alloc_size > store.config.trunk_file_size
    ):
        raise InvalidFileId(
            f"{file_id}: slot {trunk.trunk_id}:{trunk.offset}+{trunk.alloc_size} cannot hold {size} bytes "
            f"in a container of {store.config.trunk_file_size}"
        )
    return ReplicaTarget(store, file_id, parsed, size)


def open_upload(store: Store, file_id: str, size: int) -> Upload:
    """See :meth:`Store.open_replica_upload`."""
    store._live()
    replica = target(store, file_id, upload.check_size(size))
    if store.exists(file_id):
        raise AlreadyExists(f"{file_id} is stored already")
    in_memory = replica.parsed.trunk is not None and size <= MEMORY_LIMIT
    return Upload(store, size, "", replica.parsed.store_path, in_memory=in_memory, replica=replica, counted=False)


def put(store: Store, file_id: str, data: Bytes) -> None:
    """See :meth:`Store.put_replica`."""
    store._live()
    if not store._dedup and _put_in_free_slot(store, file_id, data):
        return
    replica = target(store, file_id, len(data))
    if replica.parsed.trunk is None:
        upload.upload_all(open_upload(store, file_id, len(data)), [data])
        return
    # A trunk file held in memory already: straight into its slot.
    replica.check_crc(crc32(data))
    store_path, admitted = replica.parsed.store_path, replica.admitted
    store._guard.admit(store_path, admitted)
    try:
        write_slot(replica, data, None)
    except BaseException:
        store._guard.release(store_path, admitted)
        raise


# ---- trunk slots -------------------------------------------------------------------------------------
def _put_in_free_slot(store: Store, file_id: str, data: Bytes) -> bool:
    """The hot path of replication: a small trunk file that passes every check, into its free slot.

    ``False``, with nothing done, for anything else (a slot that is not free included): the full path
    then stores it or says precisely why it cannot.
    """
    slot = _decode_slot(store, file_id, data)
    if slot is None:
        return False
    trunk_id, offset, alloc, home, header = slot
    store_path = home[0]
    guard, pool = store._guard, store._pool
    guard.admit(store_path, alloc)
    try:
        try:
            reservation = pool.reserve_at(trunk_id, offset, alloc, home)
        except SlotConflict:
            guard.release(store_path, alloc)
            return False
        pool.wait(pool.fill(reservation, header, data))
    except BaseException:
        guard.release(store_path, alloc)
        raise
    return True


def _decode_slot(store: Store, file_id: str, data: Bytes) -> tuple[int, int, int, tuple[int, int, int], bytes] | None:
    """``(trunk_id, offset, alloc_size, (store_path, sub_high, sub_low), header)`` of a trunk file's ID
    of this store's group and store paths that names ``data`` (its size and crc32) in a slot that fits
    a container; ``None`` for anything else.

    Decoded from the ID's fixed positions as the read fast path does (:mod:`trunkstore.fastpath`),
    without building a :class:`FileId`: its decoder checks the group, the length, the base64 parts and
    the trunk flags, and the directory part and the extension part are checked here, so every ID
    taken is one the full parser takes, with the same meaning.
    """
    decoded = store._decode_trunk_id(file_id)
    if decoded is None:
        return None
    raw, (_source, mtime, high, size, crc, trunk_id, offset, alloc) = decoded
    start = store._remote_start
    directory = _DIRECTORY.match(raw, start)
    if directory is None:
        return None
    home = (_HEX[directory[1]], _HEX[directory[2]], _HEX[directory[3]])
    if (
        high & _APPENDER_HIGH  # a size field no storage makes: the full checks say what it means
        or home[0] >= store._path_count
        or max(home[1], home[2]) >= store.config.subdir_count_per_path
        or _TAIL.fullmatch(raw, start + 53) is None
        or size != len(data)
        or trunk_id < 1
        or alloc < size + HEADER_SIZE
        or offset + alloc > store.config.trunk_file_size
        or crc != crc32(data)
    ):
        return None
    return trunk_id, offset, alloc, home, HEADER.pack(TYPE_FILE, alloc, size, crc, mtime, raw[start + 53 :])


def write_slot(replica: ReplicaTarget, data: Bytes | None, spooled: Spooled | None) -> None:
    """Write a checked trunk replica (from memory or a spool file) into exactly the slot its ID names."""
    store = replica.store
    if store._dedup:
        # Each holder of a slot is registered (as dedup.py does for uploads); deletions take this lock too.
        with store._dedup_lock:
            _write_slot(replica, data, spooled)
            store._meta.add_holder(_slot_key(replica.parsed), replica.file_id)
    else:
        _write_slot(replica, data, spooled)


def _write_slot(replica: ReplicaTarget, data: Bytes | None, spooled: Spooled | None) -> None:
    """Reserve the slot and write it; or, with dedup, find it holding the same bytes (then shared)."""
    store, parsed = replica.store, replica.parsed
    trunk = parsed.trunk
    assert trunk is not None
    pool = store._pool
    home = (parsed.store_path, parsed.sub_high, parsed.sub_low)
    try:
        reservation = pool.reserve_at(trunk.trunk_id, trunk.offset, trunk.alloc_size, home)
    except SlotConflict:
        _slot_taken(replica, data, spooled)
        return
    header = reading.expected_header(parsed)
    if data is not None:
        pool.wait(pool.fill(reservation, header, data))
        return
    assert spooled is not None
    try:
        source_fd = os.open(spooled.path, os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        pool.release(reservation)
        raise
    try:
        ticket = pool.fill(reservation, header, None, source_fd, spooled.size)
    finally:
        os.close(source_fd)
    pool.wait(ticket)


def _slot_taken(replica: ReplicaTarget, data: Bytes | None, spooled: Spooled | None) -> None:
    """The slot of a replica is not free: :class:`AlreadyExists` if it holds this very file; with dedup,
    return once it is marked shared if it holds the same bytes; else :class:`SlotConflict`."""
    store, parsed, file_id = replica.store, replica.parsed, replica.file_id
    try:
        reading.check_slot(store, parsed)
    except FileNotFound:
        pass
    else:
        raise AlreadyExists(f"{file_id} is stored already")
    if store._dedup and _share(replica, data, spooled):
        return
    trunk = parsed.trunk
    assert trunk is not None
    raise SlotConflict(
        f"{file_id}: its slot {trunk.trunk_id}:{trunk.offset}+{trunk.alloc_size} holds another file here"
    )


def _share(replica: ReplicaTarget, data: Bytes | None, spooled: Spooled | None) -> bool:
    """Mark the replica's slot shared if a registered holder has the same bytes there (the owner gave one
    slot to several uploads); the caller registers the replica as one more holder.  Dedup lock held."""
    store, parsed = replica.store, replica.parsed
    trunk = parsed.trunk
    assert trunk is not None
    pool = store._pool
    try:
        on_disk = pool.slot_header(trunk.trunk_id, trunk.offset)
        reading.check_container_dir(store, parsed)
    except FileNotFound:
        return False
    _kind, alloc, size, crc, _mtime, _ext7 = HEADER.unpack(on_disk)
    key = _slot_key(parsed)
    if (alloc, size, crc) != (trunk.alloc_size, replica.size, parsed.crc32) or store._meta.find_content(key) is None:
        return False
    start = trunk.offset + HEADER_SIZE
    if data is not None:
        same = pool.read(trunk.trunk_id, start, size) == data
    else:
        assert spooled is not None
        same = dedup.same_bytes(pool.containers[trunk.trunk_id].path, start, size, spooled.path)
    if not same:
        return False
    if on_disk[:1] != TYPE_SHARED:
        pool.mark_shared(trunk.trunk_id, trunk.offset)
    return True


def _slot_key(parsed: FileId) -> bytes:
    """The dedup index key under which the holders of a replicated slot are registered.

    The slot's location, size and crc32 (the bytes themselves are compared before a slot is shared).
    It is never a content digest, which this store's own uploads look up: so they never share a slot
    of a container that another storage allocates in.
    """
    trunk = parsed.trunk
    assert trunk is not None
    location = TRUNK_INFO.pack(trunk.trunk_id, trunk.offset, trunk.alloc_size)
    return _SLOT_KEY.pack(b"slot:", location, parsed.declared_size, parsed.crc32)


# ---- appender files ----------------------------------------------------------------------------------
def append(store: Store, file_id: str, offset: int, data: Bytes) -> None:
    """See :meth:`Store.append_replica`."""
    store._live()
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"an append's offset must be a non-negative integer, not {offset!r}")
    parsed, path = appender.appender_path(store, file_id)
    end = offset + len(data)
    with store._file_lock(parsed.remote_filename):
        size = _size_of(path, file_id)
        if size >= end and size != offset:
            raise AlreadyExists(f"{file_id}: the append of bytes {offset}..{end} is applied already")
        if size != offset:
            raise InvalidArgument(
                f"{file_id} has {size} bytes: an append of bytes {offset}..{end} does not follow them "
                "(an earlier change is missing here)"
            )
        store._guard.admit(parsed.store_path, len(data))
        plainfiles.write_at(path, offset, data, durable=store._durable)


def rename(store: Store, src_id: str, dest_id: str) -> None:
    """See :meth:`Store.rename_replica`."""
    store._live()
    src, dest = store._parse(src_id), store._parse(dest_id)
    if not src.is_appender:
        raise NotAppender(f"{src_id} is not an appender file")
    if dest.kind is not FileKind.NORMAL or dest.store_path != src.store_path:
        raise InvalidFileId(f"{dest_id} is not a normal file's ID in the store path of {src_id}")
    src_path, dest_path = store.layout.file_path(src), store.layout.file_path(dest)
    with store._file_lock(src.remote_filename):
        if not os.path.exists(src_path):
            if os.path.exists(dest_path):
                raise AlreadyExists(f"{src_id} is renamed to {dest_id} already")
            raise FileNotFound(f"no file {src_id}")
        if not os.path.exists(dest_path):
            size, crc = plainfiles.crc32_of(src_path)
            if (size, crc) != (dest.declared_size, dest.crc32):
                raise ContentMismatch(
                    f"{src_id} has {size} bytes of crc32 {crc:08x}; {dest_id} says "
                    f"{dest.declared_size} bytes of crc32 {dest.crc32:08x}"
                )
        elif not os.path.samefile(src_path, dest_path):
            raise AlreadyExists(f"{dest_id} exists already")
        # Metadata first: a rename cut short anywhere after this is finished when it is applied again.
        store._meta.rename_meta(src.remote_filename, dest.remote_filename)
        if not os.path.exists(dest_path):
            directory = store.layout.ensure_data_dir(dest.store_path, dest.sub_high, dest.sub_low)
            os.link(src_path, dest_path)
            if store._durable:
                fsync_dir(directory)
        os.unlink(src_path)
        if store._durable:
            fsync_dir(os.path.dirname(src_path))


def _size_of(path: str, file_id: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        raise FileNotFound(f"no file {file_id}") from None
