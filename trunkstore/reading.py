"""Reading files other than through the fast path, and checking that a trunk ID names its file.

The fast path (:mod:`trunkstore.fastpath`) serves whole trunk files; everything else comes here:
ranges, plain files, streaming into a file object, ``stat`` and ``locate``.  A trunk ID is taken to
name a file only when its container sits in the directory the ID names, a live slot starts exactly at
its offset, and the slot's header is the one the ID implies (or, for a slot shared by dedup, the ID is
one of its registered holders).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, BinaryIO

from trunkstore import fileid as fid
from trunkstore import plainfiles
from trunkstore.checksum import crc32
from trunkstore.errors import CorruptData, FileNotFound, InvalidArgument
from trunkstore.fileid import FileId, FileKind
from trunkstore.reports import FileStat
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED

if TYPE_CHECKING:
    from trunkstore.store import Store


def expected_header(parsed: FileId) -> bytes:
    """The slot header a trunk file's ID implies."""
    trunk = parsed.trunk
    assert trunk is not None
    return HEADER.pack(TYPE_FILE, trunk.alloc_size, parsed.declared_size, parsed.crc32, parsed.timestamp, parsed.ext7)


def check_container_dir(store: Store, parsed: FileId) -> None:
    """A trunk ID must name the directory its container is in, as FastDFS paths do."""
    trunk = parsed.trunk
    assert trunk is not None
    container = store._pool.containers.get(trunk.trunk_id)
    if container is None or (container.store_path, container.sub_high, container.sub_low) != (
        parsed.store_path,
        parsed.sub_high,
        parsed.sub_low,
    ):
        raise FileNotFound(f"no file {parsed}")


def shared_slot_matches(store: Store, parsed: FileId, on_disk: bytes) -> bool:
    """A slot shared by dedup: the ID must be a registered holder of content of its size and crc."""
    trunk = parsed.trunk
    assert trunk is not None
    _kind, alloc, size, crc, _mtime, _ext7 = HEADER.unpack(on_disk)
    return (
        alloc == trunk.alloc_size
        and size == parsed.declared_size
        and crc == parsed.crc32
        and store._meta.is_holder(str(parsed))
    )


def check_slot(store: Store, parsed: FileId) -> int:
    """Verify that the slot named by a trunk ID holds that file; returns the file's size."""
    trunk = parsed.trunk
    assert trunk is not None
    expected = expected_header(parsed)
    check_container_dir(store, parsed)
    try:
        on_disk = store._pool.slot_header(trunk.trunk_id, trunk.offset)
    except FileNotFound:
        raise FileNotFound(f"no file {parsed}") from None
    if on_disk == expected:
        return parsed.declared_size
    if on_disk[:1] == TYPE_SHARED and shared_slot_matches(store, parsed, on_disk):
        return parsed.declared_size
    raise FileNotFound(f"no file {parsed}")


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidArgument("offset and length must not be negative")


def crc_failure(file_id: str) -> CorruptData:
    return CorruptData(f"{file_id}: stored bytes fail their crc32 check")


def size_failure(file_id: str, on_disk: int, declared: int) -> CorruptData:
    return CorruptData(f"{file_id}: {on_disk} bytes on disk, its ID says {declared}")


def _check_size(parsed: FileId, file_id: str, size: int) -> None:
    """:class:`CorruptData` if a normal file's ``size`` on disk is not its ID's."""
    if parsed.kind is FileKind.NORMAL and size != parsed.declared_size:
        raise size_failure(file_id, size, parsed.declared_size)


def _open_plain(store: Store, parsed: FileId, file_id: str) -> tuple[int, int]:
    """``(fd, size)`` of a plain file; :class:`CorruptData` if it is a normal file of another size than its ID's.

    A normal file never changes once published, so any other size is damage (a file cut short, say);
    appender and slave files record no size of their own.  The size comes with the open for free, so it
    is checked on every read, whatever ``verify_crc_on_read`` says.
    """
    fd = plainfiles.open_existing(store.layout.file_path(parsed))
    try:
        size = os.fstat(fd).st_size
        _check_size(parsed, file_id, size)
    except BaseException:
        os.close(fd)
        raise
    return fd, size


def read(store: Store, file_id: str, offset: int, length: int | None) -> bytes:
    """``length`` bytes (``None``: to the end) of the file from ``offset``, by the full checks."""
    store._live()
    _check_range(offset, length)
    parsed = store._parse(file_id)
    verify = store.config.verify_crc_on_read
    if parsed.trunk is not None:
        size = check_slot(store, parsed)
        start = min(offset, size)
        end = size if length is None else min(size, start + length)
        data = store._pool.read(parsed.trunk.trunk_id, parsed.trunk.offset + HEADER_SIZE, size)
        if verify and crc32(data) != parsed.crc32:
            raise crc_failure(file_id)
        return data[start:end]
    fd, size = _open_plain(store, parsed, file_id)
    try:
        start = min(offset, size)
        end = size if length is None else min(size, start + length)
        data = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    if verify and start == 0 and end == size and parsed.kind == FileKind.NORMAL and crc32(data) != parsed.crc32:
        raise crc_failure(file_id)
    return data


def read_into(store: Store, file_id: str, out: BinaryIO, offset: int, length: int | None) -> int:
    """Stream the file's bytes (a range of them) into ``out``; returns how many were written.

    A whole normal file's crc32 is computed over the bytes as they are streamed (with
    ``verify_crc_on_read``) and checked at the end: when it fails, :class:`CorruptData` is raised after
    every byte has been written to ``out``, so the caller must discard what it received.  A range
    cannot be checked against the whole file's crc32; a size other than the ID's is refused before
    anything is written.
    """
    store._live()
    _check_range(offset, length)
    parsed = store._parse(file_id)
    if parsed.trunk is not None:
        data = store.get(file_id, offset, length)
        out.write(data)
        return len(data)
    counters = store.counters
    counters.download_total += 1
    fd, size = _open_plain(store, parsed, file_id)
    written = 0
    crc = 0
    try:
        position = min(offset, size)
        end = size if length is None else min(size, position + length)
        verify = store.config.verify_crc_on_read and position == 0 and end == size and parsed.kind is FileKind.NORMAL
        while position < end:
            chunk = os.pread(fd, min(plainfiles.CHUNK, end - position), position)
            if not chunk:
                break
            if verify:
                crc = crc32(chunk, crc)
            out.write(chunk)
            position += len(chunk)
            written += len(chunk)
    finally:
        os.close(fd)
    if verify and (written != size or crc != parsed.crc32):
        raise crc_failure(file_id)
    counters.download_ok += 1
    counters.download_bytes += written
    return written


def locate(store: Store, file_id: str) -> tuple[str, int, int]:
    """``(path, offset, size)`` of the file's bytes on disk (see :meth:`Store.locate`)."""
    store._live()
    parsed = store._parse(file_id)
    if parsed.trunk is not None:
        size = check_slot(store, parsed)
        container = store._pool.containers[parsed.trunk.trunk_id]
        return container.path, parsed.trunk.offset + HEADER_SIZE, size
    path = store.layout.file_path(parsed)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise FileNotFound(f"no file {file_id}") from None
    # What the caller sends from here is not checked again: a normal file cut short or grown is
    # refused now, as a read of it would be.
    _check_size(parsed, file_id, size)
    return path, 0, size


def stat(store: Store, file_id: str) -> FileStat:
    """Size, crc32, creation time, kind and source of a live file."""
    store._live()
    parsed = store._parse(file_id)
    kind = parsed.kind
    if parsed.trunk is not None:
        size = check_slot(store, parsed)
    else:
        try:
            st = os.lstat(store.layout.file_path(parsed))
        except FileNotFoundError:
            raise FileNotFound(f"no file {file_id}") from None
        size = st.st_size
        if kind == FileKind.NORMAL and st.st_nlink > 1 and store._meta.is_holder(file_id):
            kind = FileKind.LINK
    return FileStat(
        file_id=str(parsed),
        size=size,
        crc32=parsed.crc32,
        create_time=parsed.timestamp,
        kind=kind,
        source_ip=fid.source_to_ip(parsed.source),
        source=parsed.source,
    )
