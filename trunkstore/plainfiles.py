"""Plain files in the sub-directory layout: large files, appender files and slave files.

New files are written under the store path's ``tmp/`` directory, synced, and then linked into place,
so a reader never sees a half-written file and a crash leaves at most a stray temporary file (removed
when the store is next opened).  Linking (not renaming) refuses to replace an existing name, which is
how a slave name that is taken already is detected.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from trunkstore import diskio
from trunkstore.buffers import Bytes
from trunkstore.checksum import crc32
from trunkstore.errors import FileExists, FileNotFound, StoreFull

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Spooled:
    """A complete temporary file: its path, size and crc32."""

    path: str
    size: int
    crc32: int


class SpoolWriter:
    """A new temporary file in ``tmp_dir`` written piece by piece; its size and crc32 are kept on the way.

    :meth:`finish` closes it and returns the :class:`Spooled` file; :meth:`discard` (idempotent) removes it.
    """

    __slots__ = ("crc32", "fd", "path", "size")

    def __init__(self, tmp_dir: str) -> None:
        os.makedirs(tmp_dir, exist_ok=True)
        self.path = os.path.join(tmp_dir, uuid.uuid4().hex)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.size = 0
        self.crc32 = 0

    def write(self, data: Bytes) -> None:
        """Append ``data``; when that fails, ``size`` and ``crc32`` count just the bytes that were written."""
        view = memoryview(data).cast("B")
        try:
            while view:
                written = os.write(self.fd, view)
                self.crc32 = crc32(view[:written], self.crc32)
                self.size += written
                view = view[written:]
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreFull(f"file system full while writing {self.path}") from exc
            raise

    def finish(self, *, durable: bool) -> Spooled:
        """Close the file (synced first when ``durable``); the writer must not be written to again."""
        if durable:
            os.fsync(self.fd)
        fd, self.fd = self.fd, -1
        os.close(fd)
        return Spooled(self.path, self.size, self.crc32)

    def discard(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def publish(spooled: Spooled, final_path: str, *, durable: bool) -> None:
    """Move a spooled file to ``final_path``; raise :class:`FileExists` if that name is taken."""
    try:
        os.link(spooled.path, final_path)
    except FileExistsError:
        os.unlink(spooled.path)
        raise FileExists(f"{os.path.basename(final_path)} exists already") from None
    except BaseException:
        os.unlink(spooled.path)
        raise
    os.unlink(spooled.path)
    if durable:
        diskio.fsync_dir(os.path.dirname(final_path))


def discard(spooled: Spooled) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spooled.path)


def read_chunks(source: BinaryIO, limit: int | None = None) -> Iterable[bytes]:
    """Chunks of a binary file object, at most ``limit`` bytes in all."""
    remaining = limit
    while remaining is None or remaining > 0:
        chunk = source.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def open_existing(path: str, flags: int = os.O_RDONLY) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFound(f"no file {os.path.basename(path)}") from None


def write_at(path: str, offset: int | None, data: Bytes, *, durable: bool) -> int:
    """Write ``data`` at ``offset`` (``None``: append); returns the file's new size.

    A write that fails part way (a full disk, an I/O error, a failed sync) is undone, so that a retry
    does not repeat what it wrote: the file is cut back to its old size and the bytes it overwrote are
    written back from a copy read first.  Only if undoing fails too does the file keep part of the new
    bytes; the write's error is raised either way, noting the failure to undo it.  Callers serialise
    writes to one file (the store's file locks), so nothing else changes it meanwhile.
    """
    fd = open_existing(path, os.O_RDWR | (os.O_APPEND if offset is None else 0))
    try:
        view = memoryview(data).cast("B")
        old_size = os.fstat(fd).st_size
        start = old_size if offset is None else offset
        # At most as many bytes as are being written, and only for a modify within the file.
        overwritten = os.pread(fd, min(view.nbytes, old_size - start), start) if start < old_size else b""
        position = offset
        try:
            while view:
                written = os.write(fd, view) if position is None else os.pwrite(fd, view, position)
                view = view[written:]
                if position is not None:
                    position += written
            if durable:
                os.fdatasync(fd)
        except BaseException as exc:
            failure: BaseException = exc
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                failure = StoreFull(f"file system full while writing {os.path.basename(path)}")
            _undo_write(fd, old_size, start, overwritten, failure, durable=durable)
            if failure is exc:
                raise
            raise failure from exc
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _undo_write(
    fd: int, old_size: int, start: int, overwritten: bytes, failure: BaseException, *, durable: bool
) -> None:
    """Put back a file's old size and the ``overwritten`` bytes at ``start``; a failure is noted on ``failure``."""
    try:
        os.ftruncate(fd, old_size)
        view = memoryview(overwritten)
        while view:
            written = os.pwrite(fd, view, start)
            view = view[written:]
            start += written
        if durable:
            os.fdatasync(fd)
    except OSError as exc:
        failure.add_note(f"the file could not be put back as it was, and may hold part of the new bytes: {exc}")


def truncate(path: str, size: int, *, durable: bool) -> None:
    fd = open_existing(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if durable:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def crc32_of(path: str) -> tuple[int, int]:
    """``(size, crc32)`` of a whole file, read in chunks."""
    fd = open_existing(path)
    crc = 0
    size = 0
    try:
        while chunk := os.read(fd, CHUNK):
            crc = crc32(chunk, crc)
            size += len(chunk)
    finally:
        os.close(fd)
    return size, crc


def remove_stale_tmp(tmp_dir: str) -> int:
    """Delete what a crash left in ``tmp_dir``; returns how many entries went.

    Only spool files are made there, but anything else found (a directory someone made, say) is removed
    too, so that it cannot stop the store from opening; what cannot be removed is left, with a warning.
    """
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        path = os.path.join(tmp_dir, name)
        try:
            try:
                os.unlink(path)  # a file, or a symbolic link (never what it points to)
            except IsADirectoryError:
                shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            warnings.warn(f"cannot remove {path} left in the temporary directory: {exc}", RuntimeWarning, stacklevel=2)
            continue
        removed += 1
    return removed
