"""One trunk container: a sparse file of ``trunk_file_size`` bytes holding many slots.

Writes go through ``pwrite``; reads of whole slots go through a shared read-only memory map, which
costs no system call when the pages are cached (``pread`` is used where mapping is unavailable).
Containers are never truncated while mapped: freed space is returned by punching holes, and a
container is only unlinked once wholly free, so a map never faults on a missing page.
"""

from __future__ import annotations

import errno
import mmap
import os

from trunkstore import diskio
from trunkstore.buffers import Bytes
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED


class TrunkContainer:
    """An open container file.  Thread-safe for concurrent reads and writes of distinct slots."""

    __slots__ = ("fd", "id_prefix", "map", "path", "size", "store_path", "sub_high", "sub_low", "trunk_id")

    def __init__(
        self, path: str, trunk_id: int, store_path: int, sub_high: int, sub_low: int, size: int, fd: int
    ) -> None:
        self.path = path
        self.trunk_id = trunk_id
        self.store_path = store_path
        self.sub_high = sub_high
        self.sub_low = sub_low
        self.size = size
        self.fd = fd
        #: ``group/Mxx/HH/HH/``: what every ID of a file in this container starts with.
        self.id_prefix = ""
        self.map: mmap.mmap | None = None
        try:
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError):
            self.map = None

    @classmethod
    def create(
        cls, path: str, trunk_id: int, store_path: int, sub_high: int, sub_low: int, size: int
    ) -> TrunkContainer:
        """Create (or reset a stray leftover at) ``path`` as an all-free sparse container."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, 0)  # a file left by a crash before its creation was recorded holds nothing
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, trunk_id, store_path, sub_high, sub_low, size, fd)

    @classmethod
    def open(cls, path: str, trunk_id: int, store_path: int, sub_high: int, sub_low: int, size: int) -> TrunkContainer:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, trunk_id, store_path, sub_high, sub_low, size, fd)

    def read(self, offset: int, length: int) -> bytes:
        mapped = self.map
        if mapped is not None:
            return mapped[offset : offset + length]
        return os.pread(self.fd, length, offset)

    def slots(self, start: int, end: int) -> tuple[list[tuple[int, int, int, int]], int]:
        """The slots tiling ``[start, end)`` from ``start`` on, each ``(offset, alloc, size, crc32)``, and
        the offset where the tiling stops (``end``, or where no valid slot header is)."""
        found: list[tuple[int, int, int, int]] = []
        position = start
        while end - position >= HEADER_SIZE:
            kind, alloc, size, crc, _mtime, _ext = HEADER.unpack(self.read(position, HEADER_SIZE))
            if kind not in (TYPE_FILE, TYPE_SHARED) or alloc < size + HEADER_SIZE or position + alloc > end:
                break
            found.append((position, alloc, size, crc))
            position += alloc
        return found, position

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")  # sliced by the byte counts pwrite returns
        while view:
            written = os.pwrite(self.fd, view, offset)
            view = view[written:]
            offset += written

    def write_slot(self, offset: int, header: bytes, data: Bytes) -> None:
        """Write a slot's header and data back to back, in one system call when possible."""
        written = os.pwritev(self.fd, (header, data), offset)
        # A memoryview's len() counts items, which may be wider than a byte.
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if written < HEADER_SIZE + size:
            self.write(offset + written, (header + bytes(data))[written:])

    def write_slot_from(self, offset: int, header: bytes, source_fd: int, count: int) -> None:
        """Write a slot's header, then ``count`` bytes copied from the start of ``source_fd``.

        The kernel copies file to file (``copy_file_range``) where it can, so the data never passes
        through this process; otherwise it is copied in 1 MiB pieces.
        """
        self.write(offset, header)
        position = 0
        target = offset + HEADER_SIZE
        try:
            while position < count:
                copied = os.copy_file_range(source_fd, self.fd, count - position, position, target + position)
                if copied == 0:
                    raise OSError(errno.EIO, f"source ended after {position} of {count} bytes")
                position += copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            while position < count:
                piece = os.pread(source_fd, min(count - position, 1 << 20), position)
                if not piece:
                    raise OSError(errno.EIO, f"source ended after {position} of {count} bytes") from None
                self.write(target + position, piece)
                position += len(piece)

    def clear(self, offset: int, length: int, free_start: int, free_end: int) -> None:
        diskio.clear_range(self.fd, offset, length, free_start, free_end)

    def datasync(self) -> None:
        os.fdatasync(self.fd)

    def disk_usage(self) -> int:
        return os.fstat(self.fd).st_blocks * 512

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
